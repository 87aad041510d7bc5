//! The load policy: what loading a model may touch.
//!
//! One [`LoadPolicy`] decides every file and network access a load makes:
//!
//! - External data must stay inside the model's folder: absolute paths, `..` that
//!   leaves the folder, and symlinks resolving outside it are rejected; the final
//!   file is opened without following links (`O_NOFOLLOW`) and must be a regular
//!   file (no devices or fifos; `O_NONBLOCK` keeps a fifo from hanging the open);
//!   a file with several hard links is rejected unless allowed, since a hard link
//!   can expose a file from outside the folder.
//! - Offsets and lengths are checked against the file's size (from `fstat` on the
//!   opened descriptor, so the check and the use see the same file) and against
//!   dtype × shape before anything is allocated or mapped.
//! - Node count, tensor size and subgraph nesting depth are bounded, with defaults
//!   that real models never reach.
//! - No network access: a `location` that is a URL is rejected naming its host,
//!   unless the host is allowed (and even then modc does not fetch remote data).
//!
//! These are the shapes of the known ONNX external-data vulnerabilities
//! (CVE-2022-25882 and CVE-2024-27318: path traversal; symlink and hard-link escapes
//! fixed in onnx 1.21); `tests/security.rs` has one test for each.
//!
//! ```
//! use modc::LoadPolicy;
//! let p = LoadPolicy::default().with_max_nodes(1000);
//! assert_eq!(p.max_nodes, 1000);
//! ```

use crate::ir::tensor::ExternalFile;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Limits and rules applied while loading a model.
#[derive(Clone, Debug)]
pub struct LoadPolicy {
    /// Most nodes in the whole model, subgraphs and functions included.
    pub max_nodes: usize,
    /// Largest single tensor, in bytes.
    pub max_tensor_bytes: u64,
    /// Deepest nesting of subgraphs (If inside Loop inside ...).
    pub max_subgraph_depth: usize,
    /// Whether external data files may be read at all.
    pub allow_external_data: bool,
    /// Whether an external data file may have more than one hard link.
    pub allow_hard_links: bool,
    /// Hosts a load may contact. Empty: no network access at all.
    pub allowed_hosts: Vec<String>,
}

impl Default for LoadPolicy {
    fn default() -> Self {
        LoadPolicy {
            max_nodes: 5_000_000,
            max_tensor_bytes: 64 << 30,
            max_subgraph_depth: 64,
            allow_external_data: true,
            allow_hard_links: false,
            allowed_hosts: Vec::new(),
        }
    }
}

impl LoadPolicy {
    pub fn with_max_nodes(mut self, n: usize) -> Self {
        self.max_nodes = n;
        self
    }
    pub fn with_max_tensor_bytes(mut self, n: u64) -> Self {
        self.max_tensor_bytes = n;
        self
    }
    pub fn with_max_subgraph_depth(mut self, n: usize) -> Self {
        self.max_subgraph_depth = n;
        self
    }
    pub fn with_hard_links(mut self, allow: bool) -> Self {
        self.allow_hard_links = allow;
        self
    }
}

/// A load refused by the policy. Every variant names the tensor and the path.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecurityError {
    #[error("tensor '{tensor}': external data location '{location}' is an absolute path; it must be relative to the model's folder")]
    AbsolutePath { tensor: String, location: String },
    #[error("tensor '{tensor}': external data location '{location}' leaves the model's folder")]
    Traversal { tensor: String, location: String },
    #[error("tensor '{tensor}': external data location '{location}' goes through a symlink to '{target}', outside the model's folder")]
    SymlinkOutside {
        tensor: String,
        location: String,
        target: String,
    },
    #[error("tensor '{tensor}': external data file '{location}' has {links} hard links; a hard link can expose a file from outside the model's folder (allow with --allow-hard-links)")]
    HardLink {
        tensor: String,
        location: String,
        links: u64,
    },
    #[error("tensor '{tensor}': external data '{location}' is not a regular file ({kind})")]
    NotRegular {
        tensor: String,
        location: String,
        kind: String,
    },
    #[error("tensor '{tensor}': external data location '{location}' names host '{host}', and the policy allows no network access to it")]
    Network {
        tensor: String,
        location: String,
        host: String,
    },
    #[error(
        "tensor '{tensor}': external data is disabled by the load policy (location '{location}')"
    )]
    ExternalDisabled { tensor: String, location: String },
    #[error("tensor '{tensor}': external data '{location}': {message}")]
    BadRange {
        tensor: String,
        location: String,
        message: String,
    },
    #[error("tensor '{tensor}': {bytes} bytes is over the limit of {limit} bytes per tensor (raise it with --max-tensor-bytes)")]
    TensorTooLarge {
        tensor: String,
        bytes: u64,
        limit: u64,
    },
    #[error("the model has more than {limit} nodes (raise the limit with --max-nodes)")]
    TooManyNodes { limit: usize },
    #[error("graph '{graph}' is nested {depth} subgraphs deep, over the limit of {limit} (raise it with --max-subgraph-depth)")]
    TooDeep {
        graph: String,
        depth: usize,
        limit: usize,
    },
    #[error("tensor '{tensor}': cannot open external data '{location}': {message}")]
    Open {
        tensor: String,
        location: String,
        message: String,
    },
}

/// Opens external data files under one folder, enforcing the policy, and shares
/// each opened file between the tensors that use it.
pub struct ExternalDataResolver<'p> {
    policy: &'p LoadPolicy,
    base: PathBuf,
    base_canonical: Option<PathBuf>,
    opened: HashMap<PathBuf, Arc<ExternalFile>>,
}

impl<'p> ExternalDataResolver<'p> {
    pub fn new(policy: &'p LoadPolicy, base: &Path) -> Self {
        ExternalDataResolver {
            policy,
            base: base.to_path_buf(),
            base_canonical: base.canonicalize().ok(),
            opened: HashMap::new(),
        }
    }

    /// Checks `location` for `tensor` and returns the opened file.
    pub fn open(
        &mut self,
        tensor: &str,
        location: &str,
    ) -> Result<Arc<ExternalFile>, SecurityError> {
        let t = || tensor.to_string();
        let l = || location.to_string();
        if !self.policy.allow_external_data {
            return Err(SecurityError::ExternalDisabled {
                tensor: t(),
                location: l(),
            });
        }
        if let Some((scheme, rest)) = location.split_once("://") {
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            {
                let host = rest
                    .split(['/', ':', '?', '#'])
                    .next()
                    .unwrap_or("")
                    .to_string();
                if host.is_empty() {
                    // `file:///etc/passwd`: a local absolute path in URL form.
                    return Err(SecurityError::AbsolutePath {
                        tensor: t(),
                        location: l(),
                    });
                }
                if self.policy.allowed_hosts.iter().any(|h| h == &host) {
                    return Err(SecurityError::Open {
                        tensor: t(),
                        location: l(),
                        message: "remote external data is not supported".into(),
                    });
                }
                return Err(SecurityError::Network {
                    tensor: t(),
                    location: l(),
                    host,
                });
            }
        }
        let rel = Path::new(location);
        let looks_windows_abs = location.len() >= 2
            && location.as_bytes()[1] == b':'
            && location.as_bytes()[0].is_ascii_alphabetic();
        if location.is_empty() {
            return Err(SecurityError::Open {
                tensor: t(),
                location: l(),
                message: "the location is empty".into(),
            });
        }
        if rel.is_absolute() || location.starts_with('\\') || looks_windows_abs {
            return Err(SecurityError::AbsolutePath {
                tensor: t(),
                location: l(),
            });
        }
        // Lexical check: `..` may never climb above the model's folder.
        let mut depth: i64 = 0;
        for c in rel.components() {
            match c {
                Component::ParentDir => depth -= 1,
                Component::Normal(_) => depth += 1,
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => {
                    return Err(SecurityError::AbsolutePath {
                        tensor: t(),
                        location: l(),
                    })
                }
            }
            if depth < 0 {
                return Err(SecurityError::Traversal {
                    tensor: t(),
                    location: l(),
                });
            }
        }
        let base_canonical = self
            .base_canonical
            .clone()
            .ok_or_else(|| SecurityError::Open {
                tensor: t(),
                location: l(),
                message: format!(
                    "the model's folder '{}' cannot be resolved",
                    self.base.display()
                ),
            })?;
        let joined = base_canonical.join(rel);
        // Resolve links; the result must still be inside the folder.
        let resolved = match joined.canonicalize() {
            Ok(p) => p,
            Err(e) => {
                return Err(SecurityError::Open {
                    tensor: t(),
                    location: l(),
                    message: e.to_string(),
                })
            }
        };
        if !resolved.starts_with(&base_canonical) {
            return Err(SecurityError::SymlinkOutside {
                tensor: t(),
                location: l(),
                target: resolved.display().to_string(),
            });
        }
        if let Some(f) = self.opened.get(&resolved) {
            return Ok(f.clone());
        }
        let file: File = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&resolved)
            .map_err(|e| SecurityError::Open {
                tensor: t(),
                location: l(),
                message: e.to_string(),
            })?;
        let meta = file.metadata().map_err(|e| SecurityError::Open {
            tensor: t(),
            location: l(),
            message: e.to_string(),
        })?;
        if !meta.file_type().is_file() {
            let ft = meta.file_type();
            use std::os::unix::fs::FileTypeExt;
            let kind = if ft.is_dir() {
                "a directory"
            } else if ft.is_fifo() {
                "a fifo"
            } else if ft.is_char_device() {
                "a character device"
            } else if ft.is_block_device() {
                "a block device"
            } else if ft.is_socket() {
                "a socket"
            } else {
                "not a regular file"
            };
            return Err(SecurityError::NotRegular {
                tensor: t(),
                location: l(),
                kind: kind.into(),
            });
        }
        if meta.nlink() > 1 && !self.policy.allow_hard_links {
            return Err(SecurityError::HardLink {
                tensor: t(),
                location: l(),
                links: meta.nlink(),
            });
        }
        // The path was checked before the open; check what was actually opened too,
        // so a directory swapped for a symlink in between cannot lead outside.
        if let Ok(real) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
            if !real.starts_with(&base_canonical) {
                return Err(SecurityError::SymlinkOutside {
                    tensor: t(),
                    location: l(),
                    target: real.display().to_string(),
                });
            }
        }
        let ext = Arc::new(ExternalFile::new(resolved.clone(), file, meta.len()));
        self.opened.insert(resolved, ext.clone());
        Ok(ext)
    }
}
