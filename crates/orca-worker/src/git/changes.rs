//! What the agent changed: every file added, modified, deleted or renamed since the commit the
//! job started from (the agent's own commits included, untracked files too), as a
//! [`Changes`] with a diffstat and a patch bounded by [`MAX_PATCH_BYTES`].
//!
//! It stages everything (`git add -A`, honouring `.gitignore`) and diffs the index against the
//! base commit. Git runs [isolated](super::GitRun::isolated) (no hooks, no global or system
//! config) and without external diff or textconv drivers, so nothing the agent planted in the
//! repository runs here.

use super::{GitError, GitRun};
use orca_core::changes::{ChangedFile, Changes, DiffStat, FileStatus, MAX_CHANGED_FILES, MAX_PATCH_BYTES};
use std::collections::HashMap;
use std::path::Path;

const LIST_CAP: usize = 32 * 1024 * 1024;

/// Collects the changes in `dir` relative to `base` (`None`: the repository had no commit).
pub async fn collect(dir: &Path, base: Option<&str>) -> Result<Changes, GitError> {
    let git = GitRun { dir: Some(dir), isolated: true, ..GitRun::default() };
    let add = git.run(&["add", "--all", "--", "."], 0).await?;
    if !add.ok() {
        return Err(add.failure("git add"));
    }
    let base_ref = match base {
        Some(b) => b.to_owned(),
        None => empty_tree(&git).await?,
    };
    let diff = |extra: &'static [&'static str]| {
        let mut args = vec!["diff", "--cached", "-M", "--no-color", "--no-ext-diff", "--no-textconv"];
        args.extend_from_slice(extra);
        args.push(base_ref.as_str());
        args.push("--");
        args
    };
    let names = git.run(&diff(&["--name-status", "-z"]), LIST_CAP).await?;
    if !names.ok() {
        return Err(names.failure("git diff --name-status"));
    }
    let nums = git.run(&diff(&["--numstat", "-z"]), LIST_CAP).await?;
    if !nums.ok() {
        return Err(nums.failure("git diff --numstat"));
    }
    let patch = git.run(&diff(&["--patch"]), MAX_PATCH_BYTES + 1).await?;
    if !patch.ok() {
        return Err(patch.failure("git diff"));
    }
    let mut files = parse_name_status(&names.stdout);
    let counts = parse_numstat(&nums.stdout);
    let mut stat = DiffStat { files_changed: files.len() as u64, ..DiffStat::default() };
    for f in &mut files {
        if let Some(&(ins, del)) = counts.get(&f.path) {
            f.insertions = ins;
            f.deletions = del;
            stat.insertions += ins.unwrap_or(0);
            stat.deletions += del.unwrap_or(0);
        }
    }
    let mut truncated = false;
    if files.len() > MAX_CHANGED_FILES {
        files.truncate(MAX_CHANGED_FILES);
        truncated = true;
    }
    let text = String::from_utf8_lossy(&patch.stdout).into_owned();
    let (text, cut, _) = Changes::bounded_patch(text, MAX_PATCH_BYTES);
    Ok(Changes {
        files,
        diffstat: stat,
        patch: text,
        truncated: truncated || cut || patch.stdout_bytes > MAX_PATCH_BYTES as u64,
        patch_bytes: patch.stdout_bytes,
        base_commit: base.map(str::to_owned),
    })
}

/// The id of the empty tree in this repository's hash (for a repository without commits).
async fn empty_tree(git: &GitRun<'_>) -> Result<String, GitError> {
    let out = git.run(&["hash-object", "-t", "tree", "/dev/null"], 200).await?;
    if !out.ok() {
        return Err(out.failure("git hash-object"));
    }
    Ok(out.stdout_text().trim().to_owned())
}

/// `git diff --name-status -z`: `S\0path\0`, or `R100\0old\0new\0` for renames and copies.
pub fn parse_name_status(out: &[u8]) -> Vec<ChangedFile> {
    let mut fields = out.split(|&b| b == 0).map(|f| String::from_utf8_lossy(f).into_owned());
    let mut files = Vec::new();
    while let Some(status) = fields.next() {
        if status.is_empty() {
            continue;
        }
        let kind = FileStatus::from_git_letter(&status);
        let Some(first) = fields.next() else { break };
        let (path, old_path) = if matches!(kind, FileStatus::Renamed | FileStatus::Copied) {
            match fields.next() {
                Some(new) => (new, Some(first)),
                None => (first, None),
            }
        } else {
            (first, None)
        };
        files.push(ChangedFile { path, status: kind, old_path, insertions: None, deletions: None });
    }
    files
}

/// `git diff --numstat -z`: `ins\tdel\tpath\0`, or `ins\tdel\t\0old\0new\0` for renames;
/// `-\t-` for binary files. Keyed by the (new) path.
pub fn parse_numstat(out: &[u8]) -> HashMap<String, (Option<u64>, Option<u64>)> {
    let mut fields = out.split(|&b| b == 0).map(|f| String::from_utf8_lossy(f).into_owned());
    let mut counts = HashMap::new();
    while let Some(entry) = fields.next() {
        let mut parts = entry.splitn(3, '\t');
        let (Some(ins), Some(del), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let path = if path.is_empty() {
            let _old = fields.next();
            match fields.next() {
                Some(new) => new,
                None => break,
            }
        } else {
            path.to_owned()
        };
        counts.insert(path, (ins.parse().ok(), del.parse().ok()));
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_status_and_numstat_parse_renames_and_binaries() {
        let names = b"M\0src/a.rs\0R087\0old name.txt\0new name.txt\0A\0img.png\0D\0gone\0";
        let files = parse_name_status(names);
        let got: Vec<_> = files.iter().map(|f| (f.path.as_str(), f.status, f.old_path.as_deref())).collect();
        assert_eq!(
            got,
            [
                ("src/a.rs", FileStatus::Modified, None),
                ("new name.txt", FileStatus::Renamed, Some("old name.txt")),
                ("img.png", FileStatus::Added, None),
                ("gone", FileStatus::Deleted, None),
            ]
        );
        let nums =
            parse_numstat(b"3\t1\tsrc/a.rs\x001\t1\t\0old name.txt\0new name.txt\0-\t-\timg.png\x000\t2\tgone\0");
        assert_eq!(nums["src/a.rs"], (Some(3), Some(1)));
        assert_eq!(nums["new name.txt"], (Some(1), Some(1)));
        assert_eq!(nums["img.png"], (None, None));
        assert_eq!(nums["gone"], (Some(0), Some(2)));
        assert!(parse_name_status(b"").is_empty() && parse_numstat(b"garbage").is_empty());
    }
}
