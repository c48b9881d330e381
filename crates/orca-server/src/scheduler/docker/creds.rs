//! The Claude Code login volume (`orca-claude-creds`): what `orca auth --status` and
//! `orca auth --logout` do. (`orca auth` itself runs `claude` interactively through the docker
//! CLI, which owns the terminal; see the CLI.)
//!
//! The volume is mounted at `/home/orca/.claude` (= `CLAUDE_CONFIG_DIR`) in every worker when
//! the backend has no `ANTHROPIC_API_KEY`. Claude Code keeps its OAuth tokens there in
//! `.credentials.json` and its account details in `.claude.json`. Status reads both in a
//! throwaway sandboxed container (no network, read-only mount) and reports only non-secret
//! fields; the tokens never leave this module.

use super::container::{LABEL_MANAGED, WORKER_USER};
use super::{is_status, remove_options};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{CreateContainerOptions, LogsOptions, RemoveVolumeOptions, WaitContainerOptions};
use futures::StreamExt;
use std::collections::HashMap;

/// Record separator between the two files in the status container's output.
const SEP: &str = "\u{1e}";

/// What the volume holds, without any secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredsStatus {
    pub volume_exists: bool,
    pub logged_in: bool,
    /// e.g. `max`, `pro`.
    pub subscription: Option<String>,
    /// The access token's expiry (ms since the epoch), refreshed by Claude Code as it runs.
    pub expires_at_ms: Option<i64>,
    pub account_email: Option<String>,
}

/// Reads the login state of `volume` using `image` for the throwaway container.
pub async fn status(docker: &Docker, volume: &str, image: &str) -> Result<CredsStatus, String> {
    match docker.inspect_volume(volume).await {
        Ok(_) => {}
        Err(e) if is_status(&e, 404) => return Ok(CredsStatus::default()),
        Err(e) => return Err(format!("cannot inspect the volume {volume}: {e}")),
    }
    let script = format!("cat /creds/.credentials.json 2>/dev/null; printf '{SEP}'; cat /creds/.claude.json 2>/dev/null; true");
    let out = run_capture(docker, image, volume, vec!["/bin/sh".into(), "-c".into(), script]).await?;
    Ok(parse_status(&out))
}

/// Parses the status container's output (the two files, separated by [`SEP`]).
pub fn parse_status(out: &str) -> CredsStatus {
    let (creds, account) = out.split_once(SEP).unwrap_or((out, ""));
    let creds: serde_json::Value = serde_json::from_str(creds.trim()).unwrap_or_default();
    let account: serde_json::Value = serde_json::from_str(account.trim()).unwrap_or_default();
    let oauth = &creds["claudeAiOauth"];
    let logged_in = oauth["accessToken"].as_str().is_some_and(|t| !t.is_empty())
        || oauth["refreshToken"].as_str().is_some_and(|t| !t.is_empty());
    CredsStatus {
        volume_exists: true,
        logged_in,
        subscription: oauth["subscriptionType"].as_str().map(str::to_owned),
        expires_at_ms: oauth["expiresAt"].as_i64(),
        account_email: account["oauthAccount"]["emailAddress"].as_str().map(str::to_owned),
    }
}

/// Deletes the volume. `Ok(false)` when there was none.
pub async fn logout(docker: &Docker, volume: &str) -> Result<bool, String> {
    match docker.remove_volume(volume, None::<RemoveVolumeOptions>).await {
        Ok(()) => Ok(true),
        Err(e) if is_status(&e, 404) => Ok(false),
        Err(e) if is_status(&e, 409) => Err(format!(
            "the volume {volume} is in use by worker containers; wait for their jobs to finish (or cancel them) and try again"
        )),
        Err(e) => Err(format!("cannot remove the volume {volume}: {e}")),
    }
}

/// Runs `cmd` in a sandboxed container with `volume` read-only at /creds; returns its stdout.
async fn run_capture(docker: &Docker, image: &str, volume: &str, cmd: Vec<String>) -> Result<String, String> {
    let name = format!("orca-auth-status-{}", uuid::Uuid::now_v7());
    let body = ContainerCreateBody {
        image: Some(image.into()),
        entrypoint: Some(cmd),
        user: Some(WORKER_USER.into()),
        labels: Some(HashMap::from([(LABEL_MANAGED.to_owned(), "auth".to_owned())])),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            network_mode: Some("none".into()),
            mounts: Some(vec![Mount {
                target: Some("/creds".into()),
                source: Some(volume.into()),
                typ: Some(MountType::VOLUME),
                read_only: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
    docker.create_container(Some(opts), body).await.map_err(|e| match e {
        e if is_status(&e, 404) => format!("the worker image {image} is not on the Docker engine (WORKER_IMAGE)"),
        e => format!("cannot create a container to read the volume: {e}"),
    })?;
    let result = async {
        docker.start_container(&name, None).await.map_err(|e| format!("cannot start the container: {e}"))?;
        let _ = docker.wait_container(&name, Some(WaitContainerOptions { condition: "not-running".into() })).next().await;
        let mut logs = docker.logs(&name, Some(LogsOptions { stdout: true, tail: "all".into(), ..Default::default() }));
        let mut out = Vec::new();
        while let Some(frame) = logs.next().await {
            match frame {
                Ok(f) => out.extend_from_slice(&f.into_bytes()),
                Err(e) => return Err(format!("cannot read the container's output: {e}")),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
    .await;
    let _ = docker.remove_container(&name, Some(remove_options())).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_shows_no_secret() {
        let creds = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat-SECRET","refreshToken":"sk-ant-ort-SECRET","expiresAt":1790000000000,"subscriptionType":"max"}}"#;
        let account = r#"{"oauthAccount":{"emailAddress":"dev@example.com"}}"#;
        let s = parse_status(&format!("{creds}{SEP}{account}"));
        assert!(s.logged_in);
        assert_eq!((s.subscription.as_deref(), s.expires_at_ms), (Some("max"), Some(1_790_000_000_000)));
        assert_eq!(s.account_email.as_deref(), Some("dev@example.com"));
        assert!(!format!("{s:?}").contains("SECRET"));
        assert!(!parse_status(SEP).logged_in);
        assert!(!parse_status("garbage").logged_in);
    }
}
