//! `wicket check DIR`: what `wicket run --manifests DIR` would serve, without serving it.

use std::path::Path;

use crate::admin::report;
use crate::controller::files::{FilesError, ManifestDir};
use crate::controller::{translate, Settings};

/// The report to print, and whether there were Problems.
pub struct Checked {
    pub output: String,
    pub has_problems: bool,
}

pub fn check(dir: &Path, settings: &Settings, json: bool) -> Result<Checked, FilesError> {
    let index = ManifestDir::open(dir)?.load();
    let snapshot = translate::build(&index, settings);
    let output = if json {
        String::from_utf8_lossy(&report::to_json(&snapshot, None)).into_owned()
    } else {
        let mut text = report::to_text(&snapshot);
        if snapshot.problems.is_empty() {
            text.push_str("\nNo problems.\n");
        }
        text
    };
    Ok(Checked {
        output,
        has_problems: !snapshot.problems.is_empty(),
    })
}
