//! Linking against a prebuilt libduckdb (the `bundled-duckdb` feature off):
//! libduckdb-sys adds the library's directory to the link search path but not
//! to the run-time one, so the binary and the tests record it as an rpath and
//! run from anywhere without LD_LIBRARY_PATH.

fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_BUNDLED_DUCKDB").is_some() {
        return;
    }
    if let Some(dir) = std::env::var_os("DUCKDB_LIB_DIR") {
        let dir = dir.to_string_lossy();
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
