//! The real stage table `khotfix run` uses. Each stage plugs in with one
//! `.stage(kind, function)` call; a stage whose module has not landed in this
//! build is left out, and a job reaching it fails with "stage X is not
//! available in this build of khotfix" (never a silent success).

use super::{Pipeline, StageKind};

/// The pipeline of this build.
pub fn default_pipeline() -> Pipeline {
    Pipeline::new().stage(StageKind::Verify, crate::verify::stage)
}
