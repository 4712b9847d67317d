//! Helpers shared by the integration tests: the real binary, temp dirs and
//! the Python/GDAL truth scripts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path under the repository root.
pub fn repo(rel: &str) -> PathBuf {
    root().join(rel)
}

/// Runs the real `wangge` binary with `args`.
pub fn wangge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wangge"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the wangge binary runs")
}

/// Runs `wangge`, asserts success and returns stdout.
pub fn wangge_ok(args: &[&str]) -> String {
    let out = wangge(args);
    assert!(
        out.status.success(),
        "wangge {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs a truth script under `tests/py` and parses its JSON stdout. Fails
/// (never skips) when python3 or its packages are missing.
pub fn python_json(script: &str, args: &[&str]) -> serde_json::Value {
    let out = python(script, args);
    serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "{script}: bad JSON ({e}): {}",
            String::from_utf8_lossy(&out)
        )
    })
}

/// Runs a GDAL program, asserts it succeeded and returns its stdout.
pub fn gdal(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {tool} ({e}); run `scripts/test`, which installs gdal-bin")
    });
    assert!(
        out.status.success(),
        "{tool} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ogrinfo STORE -q -sql SQL`: a statement run on a store by another
/// tool, as QGIS or a user would (GDAL registers the GeoPackage SQL
/// functions its R-tree triggers call).
pub fn gdal_sql(store: &Path, statement: &str) {
    gdal("ogrinfo", &[s(store), "-q", "-sql", statement]);
}

/// Path as &str.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs a script under `tests/py`, asserts it succeeded and returns its
/// stdout. Fails (never skips) when python3 or its packages are missing.
pub fn python(script: &str, args: &[&str]) -> Vec<u8> {
    let python = std::env::var("WANGGE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let out = Command::new(&python)
        .arg(repo("tests/py").join(script))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; run `scripts/test`"));
    assert!(
        out.status.success(),
        "{script} {args:?} failed; run `scripts/test`, which installs python3 with shapely:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Every feature of a store's layer via `wangge export` (GeoJSON), the
/// file written in `dir`.
pub fn exported(store: &Path, layer: &str, dir: &Path) -> Vec<serde_json::Value> {
    let out = dir.join(format!("{layer}.geojson"));
    wangge_ok(&[
        "export",
        s(store),
        "--layer",
        layer,
        "--out",
        s(&out),
        "--quiet",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    v["features"].as_array().unwrap().clone()
}

/// A throwaway PostgreSQL 15 + PostGIS cluster on a free port of
/// 127.0.0.1 (never 5432), stopped and deleted on drop. `scripts/test`
/// installs `postgresql-15-postgis-3`; without it the test fails.
pub struct PgCluster {
    dir: tempfile::TempDir,
    /// The port it listens on.
    pub port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl PgCluster {
    /// initdb and start (as `postgres` when run as root, which PostgreSQL
    /// refuses to run as).
    pub fn start() -> PgCluster {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = PgCluster { dir, port };
        let data = c.dir.path().join("data");
        c.pg_ctl(
            &format!("{PG_BIN}/initdb"),
            &["-D", s(&data), "-A", "trust", "-U", "postgres"],
        );
        c.start_server();
        c
    }

    fn start_server(&self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            s(self.dir.path())
        );
        self.pg_ctl(
            &format!("{PG_BIN}/pg_ctl"),
            &["-D", s(&data), "-o", &opts, "-w", "-l", s(&log), "start"],
        );
    }

    fn pg_ctl(&self, program: &str, args: &[&str]) {
        let out = as_postgres(program)
            .args(args).output().unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}); run `scripts/test`, which installs PostgreSQL 15 + PostGIS")
        });
        assert!(
            out.status.success(),
            "{program} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server at once (as a crash would) and starts it again.
    pub fn restart(&self) {
        let data = self.dir.path().join("data");
        self.pg_ctl(
            &format!("{PG_BIN}/pg_ctl"),
            &["-D", s(&data), "-m", "immediate", "stop"],
        );
        self.start_server();
    }

    /// Creates database `name`, with the PostGIS extension when `postgis`,
    /// and returns its URL.
    pub fn database(&self, name: &str, postgis: bool) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        if postgis {
            self.psql(name, "CREATE EXTENSION postgis");
        }
        self.url(name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// GDAL's name for database `name`.
    pub fn ogr(&self, name: &str) -> String {
        format!(
            "PG:host=127.0.0.1 port={} dbname={name} user=postgres",
            self.port
        )
    }

    /// Runs `sql` with psql in database `db`; returns the rows, one line
    /// each, fields separated by `|`.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
            ])
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .output()
            .expect("psql runs; run `scripts/test`, which installs PostgreSQL");
        assert!(
            out.status.success(),
            "psql {sql:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = as_postgres(&format!("{PG_BIN}/pg_ctl"))
            .args(["-D", s(&data), "-m", "immediate", "stop"])
            .output();
    }
}

/// `program` run as the `postgres` user when we are root (PostgreSQL
/// refuses to run as root), as ourselves otherwise.
fn as_postgres(program: &str) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}
