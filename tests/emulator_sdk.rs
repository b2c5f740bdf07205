//! Conformance of the emulator with the OFFICIAL Huawei Cloud Python SDK (`huaweicloudsdkvpc`,
//! pinned in `tests/sdk/requirements.txt`): `tests/sdk/setup-venv.sh` creates or reuses a venv
//! with the SDK, the emulator binary is started, and `tests/sdk/conformance.py` drives it through
//! every traffic-mirror operation, the port reads and the documented rejections with the SDK's
//! own `VpcClient`; `tests/sdk/identity.py` drives the SDK's federated and metadata credential
//! flows against the emulator's identity side.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const AK: &str = "SDKCONFORMANCEAK0001";
const SK: &str = "sdk-conformance-secret-0001";

/// The emulator binary as a child process, killed on drop.
struct Emulator {
    child: Child,
    url: String,
}

impl Emulator {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hwc-vpc-emulator"))
            .args(["--listen", "127.0.0.1:0", "--project-id", PROJECT])
            .args(["--credential", &format!("{AK}:{SK}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn hwc-vpc-emulator");
        let stdout = child.stdout.take().expect("emulator stdout");
        // The first line arrives as soon as the port is bound; if the emulator dies instead,
        // read_line returns at end of file.
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the emulator's first line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the emulator: {line:?}"))
            .to_string();
        Self { child, url }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sdk_python(root: &Path) -> String {
    let out = Command::new("bash")
        .arg(root.join("tests/sdk/setup-venv.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/sdk/setup-venv.sh");
    assert!(out.status.success(), "setup-venv.sh failed: {}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let venv = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .expect("setup-venv.sh printed the venv path")
        .trim()
        .to_string();
    format!("{venv}/bin/python")
}

#[test]
fn official_python_sdk_conforms() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = sdk_python(root);
    let emulator = Emulator::start();
    let out = Command::new(&python)
        .arg(root.join("tests/sdk/conformance.py"))
        .args([emulator.url.as_str(), PROJECT, AK, SK])
        .output()
        .expect("run conformance.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "conformance.py failed: {}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.starts_with("conformance: ") && last.ends_with(" checks passed, 0 steps failed"),
        "unexpected summary: {last:?}"
    );
}

/// A valid ID token for the identity test, signed with the fixture RSA key (kid `rsa-1`).
fn id_token(issuer: &str, audience: &str) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pem = std::fs::read(root.join("tests/fixtures/identity/rsa-key.pem")).expect("key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = serde_json::json!({"iss": issuer, "aud": audience,
        "sub": "system:serviceaccount:mirror:operator", "iat": now, "exp": now + 3600});
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let key = EncodingKey::from_rsa_pem(&pem).expect("rsa key");
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

#[test]
fn official_python_sdk_identity_flows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = sdk_python(root);
    let emulator = Emulator::start();
    let (issuer, audience) = ("https://oidc.cluster.example", "huaweicloud-iam");
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    // The SDK trims the file, as a kubelet-projected token may end with a newline.
    std::fs::write(&token_file, format!("{}\n", id_token(issuer, audience))).expect("token file");
    let jwks = root.join("tests/fixtures/identity/jwks.json");
    let out = Command::new(&python)
        .arg(root.join("tests/sdk/identity.py"))
        .args([emulator.url.as_str(), PROJECT])
        .arg(&token_file)
        .arg(&jwks)
        .args([issuer, audience])
        .output()
        .expect("run identity.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "identity.py failed: {}", out.status);
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.starts_with("identity: ") && last.ends_with(" checks passed, 0 steps failed"),
        "unexpected summary: {last:?}"
    );
}
