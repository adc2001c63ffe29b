//! `trellis sign` and `trellis claims`: wasmCloud's signed claims on components, made and
//! read with the host's own trust module (so what `claims` accepts is what a host accepts).

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use trellis_host::trust::{sign::SignOptions, TrustPolicy};

/// Signs `input` into `output` with `options`; `subject_seed` fills `options.subject`, and an
/// empty name becomes the file's name without `.wasm`.
pub fn sign(input: &Path, output: &Path, issuer_seed: &str, subject_seed: Option<&str>, mut options: SignOptions) -> Result<()> {
    let issuer = nkeys::KeyPair::from_seed(issuer_seed.trim()).map_err(|_| anyhow::anyhow!("--issuer-seed is not an nkey seed"))?;
    if let Some(seed) = subject_seed {
        options.subject = Some(nkeys::KeyPair::from_seed(seed.trim()).map_err(|_| anyhow::anyhow!("--subject-seed is not an nkey seed"))?);
    }
    if options.name.is_empty() {
        options.name = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    }
    let bytes = std::fs::read(input).with_context(|| format!("cannot read `{}`", input.display()))?;
    let signed = trellis_host::trust::sign::sign(&bytes, &issuer, options).map_err(anyhow::Error::msg)?;
    std::fs::write(output, &signed).with_context(|| format!("cannot write `{}`", output.display()))?;
    // Read back (not judged: claims valid only later are what was asked for).
    let token = wascap::wasm::extract_claims(&signed).map_err(|e| anyhow::anyhow!("{e}"))?.context("the signed component has no claims")?;
    eprintln!("signed `{}` as {} (issuer {})", output.display(), token.claims.subject, token.claims.issuer);
    Ok(())
}

pub async fn claims(component: &str, insecure: bool, json: bool) -> Result<()> {
    let bytes = if Path::new(component).exists() {
        std::fs::read(component).with_context(|| format!("cannot read `{component}`"))?
    } else {
        use trellis_host::wasm::sources::oci;
        let mut config = oci::OciConfig::default();
        if insecure {
            config.insecure.push(component.split('/').next().unwrap_or_default().to_string());
        }
        oci::pull_layer(component, &config, &oci::Registries::default(), 512 << 20, &oci::Wanted::COMPONENT).await.map_err(anyhow::Error::msg)?
    };
    // The claims are untrusted input: a parser panic is reported, not a crash.
    let checked = std::panic::catch_unwind(|| TrustPolicy::default().component(&bytes))
        .map_err(|_| anyhow::anyhow!("`{component}`'s embedded claims could not be read"))?;
    let Some(claims) = checked.map_err(anyhow::Error::msg)? else {
        bail!("`{component}` is not signed");
    };
    if json {
        return crate::client::print_json(&claims);
    }
    let meta = claims.metadata.clone().unwrap_or_default();
    let time = |t: Option<u64>| t.map_or("never".to_string(), |s| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string());
    println!("name        {}", meta.name.unwrap_or_default());
    println!("subject     {}", claims.subject);
    println!("issuer      {}", claims.issuer);
    println!("issued      {}", time(Some(claims.issued_at)));
    println!("expires     {}", time(claims.expires));
    println!("not before  {}", claims.not_before.map_or("-".to_string(), |s| time(Some(s))));
    println!("tags        {}", meta.tags.unwrap_or_default().join(","));
    println!("revision    {}", meta.rev.unwrap_or_default());
    println!("version     {}", meta.ver.unwrap_or_default());
    println!("hash        {}", meta.module_hash);
    Ok(())
}
