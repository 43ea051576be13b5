//! Finding the external programs `infra` drives, with install hints.
//!
//! Each tool is looked up once, by the component that owns it, and a missing
//! one is a [`ToolMissing`] error that says how to install it.

use std::path::{Path, PathBuf};

/// A program `infra` needs that is not installed.
#[derive(Debug, thiserror::Error)]
#[error("`{name}` was not found ({looked})\nhint: {hint}")]
pub struct ToolMissing {
    pub name: &'static str,
    pub looked: String,
    pub hint: &'static str,
}

/// The programs `infra` runs, with where else to look and how to install them.
#[derive(Debug, Clone, Copy)]
pub enum Tool {
    /// PostgreSQL server binaries (`initdb`, `pg_ctl`): Debian keeps them off PATH.
    PgCtl,
    Initdb,
    Java,
    Python3,
    Terraform,
    Runuser,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::PgCtl => "pg_ctl",
            Tool::Initdb => "initdb",
            Tool::Java => "java",
            Tool::Python3 => "python3",
            Tool::Terraform => "terraform",
            Tool::Runuser => "runuser",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Tool::PgCtl | Tool::Initdb => {
                "install the PostgreSQL server: `apt-get install postgresql` (Debian/Ubuntu) or `brew install postgresql@15`"
            }
            Tool::Java => {
                "install Java 17 or newer: `apt-get install openjdk-17-jre-headless`, or set JAVA_HOME"
            }
            Tool::Python3 => {
                "install Python 3.11 or newer with venv: `apt-get install python3 python3-venv`"
            }
            Tool::Terraform => {
                "install Terraform 1.11 or newer from https://developer.hashicorp.com/terraform/install and put it on PATH"
            }
            Tool::Runuser => "install util-linux: `apt-get install util-linux`",
        }
    }

    /// Directories searched after PATH; Debian keeps PostgreSQL's server
    /// binaries under `postgres_root` (`/usr/lib/postgresql`).
    fn extra_dirs(self, postgres_root: &Path) -> Vec<PathBuf> {
        match self {
            Tool::PgCtl | Tool::Initdb => postgres_bin_dirs(postgres_root),
            Tool::Java => std::env::var_os("JAVA_HOME")
                .map(|home| vec![PathBuf::from(home).join("bin")])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// Finds `tool` on PATH, then in its usual install directories.
pub fn find(tool: Tool) -> Result<PathBuf, ToolMissing> {
    find_in(
        tool,
        std::env::var_os("PATH").as_deref(),
        Path::new("/usr/lib/postgresql"),
    )
}

fn find_in(
    tool: Tool,
    path: Option<&std::ffi::OsStr>,
    postgres_root: &Path,
) -> Result<PathBuf, ToolMissing> {
    let extra = tool.extra_dirs(postgres_root);
    let cwd = std::env::current_dir().unwrap_or_default();
    if let Ok(found) = which::which_in(tool.name(), path, &cwd) {
        return Ok(found);
    }
    for dir in &extra {
        let candidate = dir.join(tool.name());
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let mut looked = "looked on PATH".to_owned();
    for dir in &extra {
        looked.push_str(&format!(", in {}", dir.display()));
    }
    Err(ToolMissing {
        name: tool.name(),
        looked,
        hint: tool.hint(),
    })
}

/// `/usr/lib/postgresql/<major>/bin`, newest major first.
fn postgres_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    majors.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    majors.into_iter().map(|(_, dir)| dir).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_says_how_to_install_it() {
        let nowhere = Path::new("/nonexistent");
        let err = find_in(Tool::Terraform, Some(nowhere.as_os_str()), nowhere).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`terraform` was not found"), "{text}");
        assert!(text.contains("hint: install Terraform"), "{text}");
    }

    #[test]
    fn missing_postgres_binaries_name_the_package() {
        let empty = tempfile::tempdir().unwrap();
        let err = find_in(Tool::Initdb, Some(empty.path().as_os_str()), empty.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`initdb` was not found"), "{text}");
        assert!(text.contains("apt-get install postgresql"), "{text}");
    }

    #[test]
    fn postgres_binaries_are_found_off_path() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("15/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("pg_ctl"), "").unwrap();
        let empty = tempfile::tempdir().unwrap();
        let found = find_in(Tool::PgCtl, Some(empty.path().as_os_str()), root.path()).unwrap();
        assert_eq!(found, bin.join("pg_ctl"));
    }

    #[test]
    fn postgres_majors_are_searched_newest_first() {
        let root = tempfile::tempdir().unwrap();
        for major in ["13", "16", "9", "not-a-version"] {
            std::fs::create_dir_all(root.path().join(major).join("bin")).unwrap();
        }
        let dirs = postgres_bin_dirs(root.path());
        let majors: Vec<_> = dirs
            .iter()
            .map(|d| d.parent().unwrap().file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(majors, ["16", "13", "9"]);
    }
}
