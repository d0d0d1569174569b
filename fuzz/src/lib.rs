//! What the fuzz targets share: the CNI plugin's parsing modules, compiled from the
//! plugin's own source files (the plugin is a binary crate, so this is how the targets
//! call exactly the code the binary runs), and the state-directory tree generator.

#[path = "../../cni/src/config.rs"]
pub mod config;
#[path = "../../cni/src/error.rs"]
pub mod error;
#[path = "../../cni/src/families.rs"]
pub mod families;
#[path = "../../cni/src/invocation.rs"]
pub mod invocation;
#[path = "../../cni/src/result.rs"]
pub mod result;

pub mod tree;
