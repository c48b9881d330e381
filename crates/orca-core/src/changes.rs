//! What a job changed in its repository: the files, a diffstat and the (size-bounded) patch.
//!
//! The worker computes a [`Changes`] from `git diff` once the agent ends and sends it as the
//! `changes` event; the backend keeps a [`ChangesSummary`] on the job (with the id of that
//! event) and serves the whole thing at `GET /api/v1/jobs/:id/diff`. When the job pushed its
//! work, a `pushed` event names the branch and commit.

use serde::{Deserialize, Serialize};

/// Largest patch carried in a `changes` event, in bytes; past it the patch is cut at a line
/// boundary and `truncated` is set (the file list and diffstat stay complete).
pub const MAX_PATCH_BYTES: usize = 1024 * 1024;
/// Most files listed in a `changes` event; past it the list is cut and `truncated` is set.
pub const MAX_CHANGED_FILES: usize = 5000;

/// How one file changed, as `git diff --name-status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    Added,
    Modified,
    Deleted,
    Renamed,
    Copied,
    TypeChanged,
    /// Anything else git reports (and any status a newer worker sends).
    #[serde(other)]
    Other,
}

impl FileStatus {
    /// From the letter git prints first in `--name-status` (`A`, `M`, `D`, `R100`, ...).
    pub fn from_git_letter(s: &str) -> FileStatus {
        match s.chars().next() {
            Some('A') => Self::Added,
            Some('M') => Self::Modified,
            Some('D') => Self::Deleted,
            Some('R') => Self::Renamed,
            Some('C') => Self::Copied,
            Some('T') => Self::TypeChanged,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Modified => "modified",
            Self::Deleted => "deleted",
            Self::Renamed => "renamed",
            Self::Copied => "copied",
            Self::TypeChanged => "type_changed",
            Self::Other => "other",
        }
    }
}

/// One changed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangedFile {
    pub path: String,
    pub status: FileStatus,
    /// The path before a rename or copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    /// Lines added; absent for binary files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insertions: Option<u64>,
    /// Lines removed; absent for binary files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletions: Option<u64>,
}

/// Totals over all changed files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffStat {
    pub files_changed: u64,
    pub insertions: u64,
    pub deletions: u64,
}

/// Everything a job changed, relative to the commit it started from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Changes {
    pub files: Vec<ChangedFile>,
    pub diffstat: DiffStat,
    /// Unified diff (`git diff` output), at most [`MAX_PATCH_BYTES`].
    pub patch: String,
    /// True when `patch` or `files` was cut to its bound.
    #[serde(default)]
    pub truncated: bool,
    /// Size of the whole patch before any cut, in bytes.
    #[serde(default)]
    pub patch_bytes: u64,
    /// The commit the job started from (the clone's HEAD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_commit: Option<String>,
}

impl Changes {
    /// Cuts `patch` to at most `max` bytes at a line boundary, recording the full size.
    pub fn bounded_patch(patch: String, max: usize) -> (String, bool, u64) {
        let full = patch.len() as u64;
        if patch.len() <= max {
            return (patch, false, full);
        }
        let mut cut = max;
        while !patch.is_char_boundary(cut) {
            cut -= 1;
        }
        let end = patch[..cut].rfind('\n').map_or(cut, |i| i + 1);
        (patch[..end].to_owned(), true, full)
    }

    pub fn summary(&self, event_id: u64) -> ChangesSummary {
        ChangesSummary {
            event_id,
            files_changed: self.diffstat.files_changed,
            insertions: self.diffstat.insertions,
            deletions: self.diffstat.deletions,
            truncated: self.truncated,
        }
    }
}

/// What the job record keeps of its `changes` event: the totals and where the full event is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangesSummary {
    /// Id of the job's `changes` event, which holds the files and the patch.
    pub event_id: u64,
    pub files_changed: u64,
    pub insertions: u64,
    pub deletions: u64,
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_from_git_letters() {
        let got: Vec<_> =
            ["A", "M", "D", "R087", "C100", "T", "U", "X", ""].iter().map(|s| FileStatus::from_git_letter(s)).collect();
        use FileStatus::*;
        assert_eq!(got, [Added, Modified, Deleted, Renamed, Copied, TypeChanged, Other, Other, Other]);
        assert_eq!(serde_json::from_value::<FileStatus>(json!("unmerged_someday")).unwrap(), Other);
    }

    #[test]
    fn patches_are_cut_at_line_boundaries() {
        let p = "line one\nline two\nline three\n".to_owned();
        assert_eq!(Changes::bounded_patch(p.clone(), 100), (p.clone(), false, 29));
        assert_eq!(Changes::bounded_patch(p.clone(), 12), ("line one\n".to_owned(), true, 29));
        let (cut, truncated, _) = Changes::bounded_patch("ééééé".into(), 3);
        assert!(truncated && cut == "é", "{cut}");
    }

    #[test]
    fn camel_case_json() {
        let c = Changes {
            files: vec![ChangedFile {
                path: "a".into(),
                status: FileStatus::Added,
                old_path: None,
                insertions: Some(1),
                deletions: Some(0),
            }],
            diffstat: DiffStat { files_changed: 1, insertions: 1, deletions: 0 },
            patch: "+x\n".into(),
            truncated: false,
            patch_bytes: 3,
            base_commit: None,
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["diffstat"], json!({"filesChanged": 1, "insertions": 1, "deletions": 0}));
        assert_eq!(v["files"][0], json!({"path": "a", "status": "added", "insertions": 1, "deletions": 0}));
        assert_eq!(serde_json::from_value::<Changes>(v).unwrap(), c);
    }
}
