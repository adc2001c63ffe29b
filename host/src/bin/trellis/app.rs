//! `trellis app …`: wadm's application API (`wadm.api.{lattice}.model.…`), as `wash app` uses
//! it, answered by the lattice's hosts.

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use wadm_types::api::{
    DeleteModelResponse, DeleteResult, DeployModelResponse, DeployResult, GetModelResponse, GetResult, ListModelsResponse,
    PutModelResponse, PutResult, StatusResponse, StatusResult, StatusType, VersionResponse,
};

use crate::args::{AppAction, ClientArgs};

pub(crate) async fn request<T: DeserializeOwned>(args: &ClientArgs, operation: &str, body: Vec<u8>, content_type: Option<&str>) -> Result<T> {
    let mut config = crate::nats_config(&args.lattice.nats);
    config.connect_timeout = std::time::Duration::from_secs(5);
    let nats = trellis_host::nats::connect(&config, "trellis-cli", None).await?;
    let subject = trellis_messages::subjects::wadm::model(&args.lattice.lattice, operation);
    let timeout = args.timeout.max(std::time::Duration::from_secs(5));
    let ask = async {
        // The request carries `--timeout`: the connection's default (10 s) would end it early.
        let mut request = async_nats::Request::new().payload(body.into()).timeout(Some(timeout));
        if let Some(ct) = content_type {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Content-Type", ct);
            request = request.headers(headers);
        }
        nats.send_request(subject.clone(), request).await
    };
    let reply = tokio::time::timeout(timeout, ask)
        .await
        .with_context(|| format!("no host answered `{subject}` (is a Trellis host running on lattice `{}`?)", args.lattice.lattice))?
        .with_context(|| format!("no host answered `{subject}`"))?;
    serde_json::from_slice(&reply.payload).with_context(|| format!("unexpected reply to `{subject}`"))
}

fn version_body(version: Option<&String>) -> Vec<u8> {
    version.map(|v| serde_json::json!({ "version": v }).to_string().into_bytes()).unwrap_or_default()
}

async fn put(args: &ClientArgs, file: &std::path::Path) -> Result<PutModelResponse> {
    let body = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let json = file.extension().is_some_and(|e| e == "json");
    let reply: PutModelResponse = request(args, "put", body, Some(if json { "application/json" } else { "application/yaml" })).await?;
    if reply.result == PutResult::Error {
        bail!("{}: {}", file.display(), reply.message);
    }
    Ok(reply)
}

/// Runs one `trellis app` command.
pub async fn run(action: AppAction) -> Result<()> {
    match action {
        AppAction::Put { client, file } => {
            let reply = put(&client, &file).await?;
            println!("put {} version {} ({} versions)", reply.name, reply.current_version, reply.total_versions);
        }
        AppAction::Deploy { client, app, version, wait, wait_for } => {
            let path = std::path::Path::new(&app);
            let looks_like_a_file = app.contains('/') || [".yaml", ".yml", ".json"].iter().any(|e| app.ends_with(e));
            let (name, version) = if path.is_file() || looks_like_a_file {
                let reply = put(&client, path).await?;
                (reply.name, version.or(Some(reply.current_version)))
            } else {
                (app, version)
            };
            let reply: DeployModelResponse = request(&client, &format!("deploy.{name}"), version_body(version.as_ref()), None).await?;
            match reply.result {
                // With --json, stdout holds one JSON value: the reply, or the final status.
                DeployResult::Acknowledged if client.json && !wait => crate::client::print_json(&reply)?,
                DeployResult::Acknowledged if client.json => {}
                DeployResult::Acknowledged => println!("{}", reply.message),
                DeployResult::NotFound => bail!("no application named `{name}`"),
                DeployResult::Error => bail!("{}", reply.message),
            }
            if wait {
                let deployed = reply.version.or(version);
                follow_deploy(&client, &name, deployed.as_deref(), wait_for).await?;
            }
        }
        AppAction::Undeploy { client, name } => {
            let reply: DeployModelResponse = request(&client, &format!("undeploy.{name}"), Vec::new(), None).await?;
            match reply.result {
                DeployResult::Acknowledged => println!("{}", reply.message),
                DeployResult::NotFound => bail!("no application named `{name}`"),
                DeployResult::Error => bail!("{}", reply.message),
            }
        }
        AppAction::List { client } => {
            let reply: ListModelsResponse = request(&client, "get", Vec::new(), None).await?;
            if reply.result == GetResult::Error {
                bail!("{}", reply.message);
            }
            if client.json {
                return crate::client::print_json(&reply.models);
            }
            println!("{:<24} {:<14} {:<14} status", "name", "newest", "deployed");
            for m in reply.models {
                let status = format!("{:?}", m.detailed_status.info.status_type).to_lowercase();
                println!("{:<24} {:<14} {:<14} {status} {}", m.name, m.version, m.deployed_version.unwrap_or_else(|| "-".into()), m.detailed_status.info.message);
            }
        }
        AppAction::Status { client, name } => {
            let reply: StatusResponse = request(&client, &format!("status.{name}"), Vec::new(), None).await?;
            match (reply.result, reply.status) {
                (StatusResult::Ok, Some(status)) => {
                    if client.json {
                        return crate::client::print_json(&status);
                    }
                    println!("{name}: {}{}", format!("{:?}", status.info.status_type).to_lowercase(), if status.info.message.is_empty() { String::new() } else { format!(": {}", status.info.message) });
                    for s in status.scalers {
                        println!("  {:<32} {:<14} {}", s.name, format!("{:?}", s.info.status_type).to_lowercase(), s.info.message);
                    }
                }
                (StatusResult::NotFound, _) => bail!("no application named `{name}`"),
                _ => bail!("{}", reply.message),
            }
        }
        AppAction::Get { client, name, version } => {
            let reply: GetModelResponse = request(&client, &format!("get.{name}"), version_body(version.as_ref()), None).await?;
            match (reply.result, reply.manifest) {
                (GetResult::Success, Some(manifest)) => crate::client::print_json(&manifest)?,
                (GetResult::NotFound, _) => bail!("{}", reply.message),
                _ => bail!("{}", reply.message),
            }
        }
        AppAction::Versions { client, name } => {
            let reply: VersionResponse = request(&client, &format!("versions.{name}"), Vec::new(), None).await?;
            if reply.result != GetResult::Success {
                bail!("{}", reply.message);
            }
            for v in reply.versions {
                println!("{}{}", v.version, if v.deployed { " (deployed)" } else { "" });
            }
        }
        AppAction::Del { client, name, version } => {
            let reply: DeleteModelResponse = request(&client, &format!("del.{name}"), version_body(version.as_ref()), None).await?;
            match reply.result {
                DeleteResult::Deleted | DeleteResult::Noop => println!("{}", reply.message),
                DeleteResult::Error => bail!("{}", reply.message),
            }
        }
    }
    Ok(())
}

/// Follows `name`'s status after a deploy until it is deployed (with `version`, when known,
/// as the deployed version) or failed: each change of the application's or a scaler's status
/// goes to stderr (unless `--json`), the outcome to stdout.
async fn follow_deploy(client: &ClientArgs, name: &str, version: Option<&str>, limit: std::time::Duration) -> Result<()> {
    let began = std::time::Instant::now();
    let mut shown: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    loop {
        let list: ListModelsResponse = request(client, "get", Vec::new(), None).await?;
        let model = list.models.into_iter().find(|m| m.name == name);
        let ours = model.as_ref().is_some_and(|m| version.is_none() || m.deployed_version.as_deref() == version);
        let reply: StatusResponse = request(client, &format!("status.{name}"), Vec::new(), None).await?;
        let Some(status) = reply.status else { bail!("no application named `{name}`") };
        let kind = format!("{:?}", status.info.status_type).to_lowercase();
        let mut lines = vec![(name.to_string(), format!("{kind}{}", with_message(&status.info.message)))];
        for s in &status.scalers {
            let scaler_kind = format!("{:?}", s.info.status_type).to_lowercase();
            lines.push((format!("  {}", s.name), format!("{scaler_kind}{}", with_message(&s.info.message))));
        }
        for (what, now) in lines {
            if shown.get(&what) != Some(&now) {
                if !client.json {
                    eprintln!("{what}: {now}");
                }
                shown.insert(what, now);
            }
        }
        if ours {
            match status.info.status_type {
                StatusType::Deployed => {
                    if client.json {
                        return crate::client::print_json(&status);
                    }
                    println!("{name}: deployed");
                    return Ok(());
                }
                StatusType::Failed => bail!("application `{name}` failed: {}", status.info.message),
                _ => {}
            }
        }
        if began.elapsed() >= limit {
            bail!("application `{name}` is not deployed after {}: {kind}{}", humantime::format_duration(limit), with_message(&status.info.message));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

fn with_message(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}
