//! Secrets for a worker container travel over its stdin, not its environment: `docker inspect`
//! shows a container's environment to anyone who can reach the Docker socket, and it stays in
//! the container's config on disk.
//!
//! Protocol (the worker side is `orca_worker::secrets`): the container is created with
//! `ORCA_SECRETS=stdin`, an open stdin and `StdinOnce`; right after start the scheduler writes
//! one line, a JSON object of environment variable names to values, and closes stdin. The
//! worker reads that line before anything else (bounded in time), puts the values into its
//! own environment and carries on as if they had been set there.

/// The line written to the worker's stdin.
pub fn encode(vars: &[(String, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> =
        vars.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    let mut line = serde_json::Value::Object(map).to_string();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_json_line() {
        let line = super::encode(&[("GIT_TOKEN".into(), "a\"b\nc".into())]);
        assert_eq!(line.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["GIT_TOKEN"], "a\"b\nc");
    }
}
