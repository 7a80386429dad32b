//! Progress bars for `jitctl sync` (drawn only on a terminal; indicatif hides them otherwise).

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use jit_shared::domain::sync::{ProgressSink, SyncProgress};
use std::{collections::HashMap, sync::Mutex};

pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    pub fn new() -> Self {
        Self { multi: MultiProgress::new(), bars: Mutex::new(HashMap::new()) }
    }

    pub fn finish(&self) {
        for bar in self.bars.lock().expect("bars lock").values() {
            bar.finish();
        }
    }

    fn bar(&self, integration: &str) -> ProgressBar {
        let mut bars = self.bars.lock().expect("bars lock");
        bars.entry(integration.to_owned())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(0));
                bar.set_style(
                    ProgressStyle::with_template("{prefix:<20} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(integration.to_owned());
                bar
            })
            .clone()
    }
}

impl ProgressSink for Bars {
    fn report(&self, progress: SyncProgress) {
        match progress {
            SyncProgress::Started { integration } => self.bar(&integration).set_message("fetching users and groups"),
            SyncProgress::UsersFetched { integration, users } => {
                self.bar(&integration).set_message(format!("{users} users fetched"))
            }
            SyncProgress::GroupsFetched { integration, groups } => {
                let bar = self.bar(&integration);
                bar.set_length(groups as u64);
                bar.set_message("groups' members fetched");
            }
            SyncProgress::MembersFetched { integration, groups_done, groups_total } => {
                let bar = self.bar(&integration);
                bar.set_length(groups_total as u64);
                bar.set_position(groups_done as u64);
            }
            SyncProgress::Writing { integration, items } => {
                let bar = self.bar(&integration);
                bar.set_length(items as u64);
                bar.set_position(0);
                bar.set_message("items written");
            }
            SyncProgress::Written { integration, items_done, .. } => {
                self.bar(&integration).set_position(items_done as u64)
            }
        }
    }
}
