//! One actor for every built-in provider that follows its links (HTTP server, messaging,
//! schedules): it calls the provider's [`FollowLinks::reconcile`] when it starts and whenever the
//! lattice's links or config change, and [`FollowLinks::stop`] when it stops. A provider is fully
//! built before the actor starts: nothing is filled in afterwards.

use actix::prelude::*;

use crate::lattice::LatticeView;

/// What a link-following provider does.
pub trait FollowLinks: Unpin + Sized + 'static {
    /// Brings what the provider runs in line with its links and config now.
    fn reconcile(&mut self, ctx: &mut Context<LinkFollower<Self>>);

    /// The provider stops: end everything it runs.
    fn stop(&mut self);
}

/// A stream that yields once for every change of `view` (links, config, specs).
pub fn changes(view: &LatticeView) -> impl futures::Stream<Item = ()> + 'static {
    futures::stream::unfold(view.changes(), |mut rx| async move { rx.changed().await.ok().map(|()| ((), rx)) })
}

/// The actor running provider `P`.
#[derive(Debug)]
pub struct LinkFollower<P> {
    provider: P,
    view: LatticeView,
}

impl<P: FollowLinks> LinkFollower<P> {
    /// `provider`, following the links in `view` once started.
    pub fn new(provider: P, view: LatticeView) -> Self {
        Self { provider, view }
    }

    /// The provider (for work scheduled on the actor's context).
    pub fn provider(&mut self) -> &mut P {
        &mut self.provider
    }
}

impl<P: FollowLinks> Actor for LinkFollower<P> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.add_stream(changes(&self.view));
        self.provider.reconcile(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.provider.stop();
    }
}

impl<P: FollowLinks> StreamHandler<()> for LinkFollower<P> {
    fn handle(&mut self, (): (), ctx: &mut Self::Context) {
        self.provider.reconcile(ctx);
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

/// Stops a link-following provider.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopFollowing;

impl<P: FollowLinks> Handler<StopFollowing> for LinkFollower<P> {
    type Result = ();
    fn handle(&mut self, _: StopFollowing, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
