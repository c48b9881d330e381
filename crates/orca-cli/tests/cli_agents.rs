//! `orca` with a real agent: `orca dev` (a real process) runs the real Claude Code CLI against
//! a fake model server; `orca job submit --follow` renders its events, `orca job status` and
//! `orca job list` show the cost, and `orca job diff` prints what it changed.
//!
//! Needs `ORCA_TEST_CLAUDE_BIN` (scripts/setup/30-agents.sh).

use orca_testkit::anthropic::{FakeAnthropic, Step};
use orca_testkit::bins;
use orca_testkit::git_http::{GitHttp, bare_repo};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const TOKEN: &str = "ghp_cli_agents_token_11";

struct Dev {
    child: Child,
    url: String,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_dev(data: &Path, env: &[(&str, String)]) -> Dev {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orca"))
        .args(["dev", "--port", "0"])
        .env("ORCA_DATA_DIR", data)
        .env("LOG_LEVEL", "warn")
        .env_remove("HOST")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start orca dev");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read the URL line");
    let url = line
        .trim()
        .strip_prefix("orca listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Dev { child, url }
}

fn orca(dev: &Dev, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orca"))
        .args(args)
        .env("ORCA_API_URL", &dev.url)
        .env("NO_COLOR", "1")
        .env("ORCA_GIT_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .output()
        .expect("run orca")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_code_job_from_the_command_line() {
    let Some(bin) = bins::claude("a_claude_code_job_from_the_command_line") else { return };
    let model =
        FakeAnthropic::start(Step::write_then_run("hello.txt", "hello from the cli\n", "echo ran > ran.txt")).await;
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("served");
    std::fs::create_dir(&served).unwrap();
    bare_repo(&served, "project.git", &[("README.md", "# project\n")]);
    let git = GitHttp::start(&served, TOKEN).await;
    let env = [
        ("ORCA_CLAUDE_BIN", bin.display().to_string()),
        ("ANTHROPIC_BASE_URL", model.url()),
        ("ANTHROPIC_API_KEY", "sk-cli-test".to_owned()),
        ("ORCA_AGENT_MAX_RETRIES", "1".to_owned()),
    ];
    let dev = start_dev(&tmp.path().join("data"), &env);
    let repo = git.url("project.git");
    let dev_ref = &dev;
    let o = tokio::task::spawn_blocking({
        let (url, repo) = (dev_ref.url.clone(), repo.clone());
        move || {
            Command::new(env!("CARGO_BIN_EXE_orca"))
                .args([
                    "job",
                    "submit",
                    "--prompt",
                    "Add hello.txt",
                    "--agent",
                    "claude-code",
                    "--repo",
                    &repo,
                    "--config",
                    "pushBranch=true",
                    "--follow",
                ])
                .env("ORCA_API_URL", url)
                .env("NO_COLOR", "1")
                .env("ORCA_GIT_TOKEN", TOKEN)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let logs = text(&o.stdout);
    assert!(o.status.success(), "{logs}\n{}", text(&o.stderr));
    for want in [
        "→ tool Write: ",
        "hello.txt",
        "→ tool Bash: echo ran > ran.txt",
        "← ok",
        "result: success in 3 turns",
        "cost $",
        "changes  2 files, +2 -0: hello.txt (added), ran.txt (added)",
        "pushed  branch orca/",
        "✔ succeeded",
    ] {
        assert!(logs.contains(want), "missing {want:?} in:\n{logs}");
    }
    assert!(!logs.contains(TOKEN));
    let id = logs.lines().next().unwrap().split_whitespace().nth(2).unwrap().to_owned();

    let status = text(&orca(&dev, &["job", "status", &id]).stdout);
    assert!(status.contains("usage:     ") && status.contains("cost $0.0"), "{status}");
    assert!(status.contains("turns:     3") && status.contains(&format!("pushed:    orca/{id} at ")), "{status}");
    let list = text(&orca(&dev, &["job", "list"]).stdout);
    assert!(list.lines().nth(1).unwrap().contains("  $0.0"), "{list}");

    let patch = text(&orca(&dev, &["job", "diff", &id]).stdout);
    assert!(patch.contains("+++ b/hello.txt") && patch.contains("+hello from the cli"), "{patch}");
    let stat = text(&orca(&dev, &["job", "diff", &id, "--stat"]).stdout);
    assert_eq!(
        stat,
        "added     hello.txt  +1 -0\nadded     ran.txt    +1 -0\n2 files changed, 2 insertions(+), 0 deletions(-)\n"
    );
    let o = orca(&dev, &["job", "diff", "0193a000-0000-7000-8000-000000000001"]);
    assert!(!o.status.success() && text(&o.stderr).contains("no job"), "{}", text(&o.stderr));
}
