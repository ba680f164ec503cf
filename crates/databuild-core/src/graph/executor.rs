//! Where a job runs (`executor` in `databuild.toml`) and the cluster resources it asks
//! for (`[jobs.slurm]`, defaults in `[graph.slurm]`; `[jobs.ray]`, defaults in
//! `[graph.ray]`), checked when the file is loaded.

use serde::Deserialize;

/// The executors a job can name.
pub const EXECUTORS: [&str; 3] = ["local", "slurm", "ray"];

/// Where a job's `exec` runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum JobExecutor {
    /// A process group on this machine (the default).
    #[default]
    Local,
    /// One Slurm batch job per job run, submitted with `sbatch`.
    Slurm(SlurmResources),
    /// One Ray job per job run, submitted through the Ray Jobs REST API.
    Ray(RayOptions),
}

impl JobExecutor {
    /// The executor's name, as written in the graph file.
    pub fn name(&self) -> &'static str {
        match self {
            JobExecutor::Local => "local",
            JobExecutor::Slurm(_) => "slurm",
            JobExecutor::Ray(_) => "ray",
        }
    }
}

/// What a Slurm job asks for. Every field is optional: Slurm's defaults apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmResources {
    /// CPUs (`--cpus-per-task`).
    pub cpus: Option<u32>,
    /// Memory (`--mem`): megabytes, or a number with a unit `K`, `M`, `G` or `T`.
    pub mem: Option<String>,
    /// Time limit (`--time`), in Slurm's forms: `minutes`, `minutes:seconds`,
    /// `hours:minutes:seconds`, `days-hours[:minutes[:seconds]]`.
    pub time: Option<String>,
    /// Partition (`--partition`).
    pub partition: Option<String>,
    /// More `sbatch` options, passed as they are (e.g. `["--qos=high"]`).
    #[serde(default)]
    pub extra_args: Vec<String>,
}

/// `sbatch` options databuild sets itself, which `extra_args` may not change.
const RESERVED: [&str; 16] = [
    "--parsable",
    "--export",
    "--job-name",
    "-J",
    "--chdir",
    "-D",
    "--output",
    "-o",
    "--error",
    "-e",
    "--input",
    "-i",
    "--wrap",
    "--array",
    "-a",
    "--wait",
];

impl SlurmResources {
    /// These resources, with each unset one taken from `defaults`; `extra_args` are the
    /// defaults' followed by these.
    pub fn or(self, defaults: &SlurmResources) -> SlurmResources {
        let mut extra_args = defaults.extra_args.clone();
        extra_args.extend(self.extra_args);
        SlurmResources {
            cpus: self.cpus.or(defaults.cpus),
            mem: self.mem.or_else(|| defaults.mem.clone()),
            time: self.time.or_else(|| defaults.time.clone()),
            partition: self.partition.or_else(|| defaults.partition.clone()),
            extra_args,
        }
    }

    /// Checks every value; on error returns the key and what is wrong with it.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.cpus == Some(0) {
            return Err(("slurm.cpus", "must be at least 1".into()));
        }
        if let Some(mem) = &self.mem {
            if !valid_mem(mem) {
                return Err((
                    "slurm.mem",
                    format!("`{mem}` is not an amount of memory; use megabytes or a number with a unit, e.g. `512M`, `4G`"),
                ));
            }
        }
        if let Some(time) = &self.time {
            if !valid_time(time) {
                return Err((
                    "slurm.time",
                    format!("`{time}` is not a Slurm time limit; use `minutes`, `minutes:seconds`, `hours:minutes:seconds` or `days-hours:minutes:seconds`, e.g. `30`, `2:00:00`, `1-12:00:00`"),
                ));
            }
        }
        if let Some(p) = &self.partition {
            if p.is_empty() || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err((
                    "slurm.partition",
                    format!("`{p}` is not a partition name (`sinfo` lists them)"),
                ));
            }
        }
        for a in &self.extra_args {
            if !a.starts_with('-') {
                return Err((
                    "slurm.extra_args",
                    format!("`{a}` is not an `sbatch` option; write each option with its value, e.g. `\"--qos=high\"`"),
                ));
            }
            let name = a.split_once('=').map_or(a.as_str(), |(n, _)| n);
            // `-ofile` is `-o file`.
            let short = RESERVED.iter().any(|r| r.len() == 2 && a.starts_with(r));
            if RESERVED.contains(&name) || short {
                return Err((
                    "slurm.extra_args",
                    format!("`{a}` sets what databuild sets itself (job name, output files, environment, working directory); remove it"),
                ));
            }
        }
        Ok(())
    }

    /// The `sbatch` options for these resources.
    pub fn sbatch_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(c) = self.cpus {
            args.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &self.mem {
            args.push(format!("--mem={m}"));
        }
        if let Some(t) = &self.time {
            args.push(format!("--time={t}"));
        }
        if let Some(p) = &self.partition {
            args.push(format!("--partition={p}"));
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// The Ray dashboard jobs go to when neither the graph file nor `RAY_ADDRESS` names one.
pub const DEFAULT_RAY_ADDRESS: &str = "http://127.0.0.1:8265";

/// Where a Ray job goes and what its entrypoint asks for. Every field is optional: the
/// address falls back to `RAY_ADDRESS`, then to a local cluster; Ray's defaults apply to
/// the resources.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RayOptions {
    /// The Ray dashboard (Jobs REST API), e.g. `http://127.0.0.1:8265`.
    pub address: Option<String>,
    /// CPUs reserved for the entrypoint (`entrypoint_num_cpus`).
    pub entrypoint_num_cpus: Option<f64>,
    /// GPUs reserved for the entrypoint (`entrypoint_num_gpus`).
    pub entrypoint_num_gpus: Option<f64>,
    /// Memory reserved for the entrypoint, in bytes (`entrypoint_memory`).
    pub entrypoint_memory: Option<u64>,
    /// The graph file key `address` came from (`jobs.ray.address` or
    /// `graph.ray.address`).
    #[serde(skip)]
    pub address_key: Option<&'static str>,
}

// Resources are checked to be finite when the file loads.
impl Eq for RayOptions {}

impl RayOptions {
    /// These options (from `[jobs.ray]`), with each unset one taken from `defaults`
    /// (`[graph.ray]`).
    pub fn or(self, defaults: &RayOptions) -> RayOptions {
        let (address, address_key) = match self.address {
            Some(a) => (Some(a), Some("jobs.ray.address")),
            None => (
                defaults.address.clone(),
                defaults.address.as_ref().map(|_| "graph.ray.address"),
            ),
        };
        RayOptions {
            address,
            entrypoint_num_cpus: self.entrypoint_num_cpus.or(defaults.entrypoint_num_cpus),
            entrypoint_num_gpus: self.entrypoint_num_gpus.or(defaults.entrypoint_num_gpus),
            entrypoint_memory: self.entrypoint_memory.or(defaults.entrypoint_memory),
            address_key,
        }
    }

    /// The dashboard address jobs go to and where it was found: the job's `address`,
    /// the graph's, the `RAY_ADDRESS` environment variable, else
    /// [`DEFAULT_RAY_ADDRESS`]. `Err` says why `RAY_ADDRESS` cannot be used.
    pub fn resolved_address(&self) -> Result<(String, &'static str), String> {
        match (&self.address, self.address_key) {
            (Some(a), Some("jobs.ray.address")) => return Ok((a.clone(), "`[jobs.ray] address`")),
            (Some(a), _) => return Ok((a.clone(), "`[graph.ray] address`")),
            (None, _) => {}
        }
        match std::env::var("RAY_ADDRESS") {
            Ok(a) if !a.is_empty() => {
                check_http_address(&a).map_err(|why| {
                    format!("the `RAY_ADDRESS` environment variable, `{a}`, is not a Ray dashboard address: {why}; set it to the dashboard's URL, e.g. `http://127.0.0.1:8265`, or set `address` in `[graph.ray]`")
                })?;
                Ok((a, "the `RAY_ADDRESS` environment variable"))
            }
            _ => Ok((
                DEFAULT_RAY_ADDRESS.to_string(),
                "the default, as neither `address` in `[jobs.ray]` or `[graph.ray]` nor `RAY_ADDRESS` is set",
            )),
        }
    }

    /// Checks every value; on error returns the key and what is wrong with it.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(a) = &self.address {
            check_http_address(a).map_err(|why| {
                (
                    "ray.address",
                    format!("`{a}` is not a Ray dashboard address: {why}; use the dashboard's URL, e.g. `http://127.0.0.1:8265`"),
                )
            })?;
        }
        for (key, v) in [
            ("ray.entrypoint_num_cpus", self.entrypoint_num_cpus),
            ("ray.entrypoint_num_gpus", self.entrypoint_num_gpus),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || v < 0.0 {
                    return Err((key, format!("`{v}` is not a number of at least 0")));
                }
            }
        }
        Ok(())
    }
}

/// Checks that `a` is an `http://` or `https://` URL with a host (and nothing after the
/// port but an optional path); says what is wrong.
pub fn check_http_address(a: &str) -> Result<(), String> {
    let Some(rest) = a
        .strip_prefix("http://")
        .or_else(|| a.strip_prefix("https://"))
    else {
        return Err("it does not start with `http://` or `https://`".into());
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !h.ends_with(']') || authority.starts_with('[') => {
            if port.is_empty()
                || !port.bytes().all(|b| b.is_ascii_digit())
                || port.parse::<u16>().is_err()
            {
                return Err(format!("`{port}` is not a port"));
            }
            h
        }
        _ => authority,
    };
    if host.is_empty() {
        return Err("it names no host".into());
    }
    if a.chars()
        .any(|c| c.is_whitespace() || c.is_control() || "?#@'\"\\".contains(c))
    {
        return Err("it contains a space, quote or one of `?#@`".into());
    }
    Ok(())
}

/// `4096`, `512M`, `4G`, `1T` (Slurm's `--mem`).
fn valid_mem(s: &str) -> bool {
    let digits = s.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    s.len() - digits.len() <= 1
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && digits.bytes().any(|b| b != b'0')
}

/// Slurm's time limit forms, or `UNLIMITED`/`INFINITE`.
fn valid_time(s: &str) -> bool {
    if s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("infinite") {
        return true;
    }
    let number = |p: &str| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit());
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, s),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    days.is_none_or(number) && parts.len() <= 3 && parts.iter().all(|p| number(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut SlurmResources)) -> Result<(), (&'static str, String)> {
        let mut r = SlurmResources::default();
        f(&mut r);
        r.validate()
    }

    #[test]
    fn memory_needs_a_number_and_at_most_one_unit() {
        for ok in ["4096", "512M", "4G", "1t", "100k"] {
            assert!(valid_mem(ok), "{ok}");
        }
        for bad in ["lots", "", "G", "4GB", "0", "4.5G", "-1", "4 G"] {
            assert!(!valid_mem(bad), "{bad}");
        }
    }

    #[test]
    fn time_limits_take_slurms_forms() {
        for ok in [
            "30",
            "30:00",
            "2:00:00",
            "1-12",
            "1-12:30",
            "1-12:30:00",
            "UNLIMITED",
        ] {
            assert!(valid_time(ok), "{ok}");
        }
        for bad in ["", "1h", "soon", "1:2:3:4", "-5", "1-", "1--2", ":30"] {
            assert!(!valid_time(bad), "{bad}");
        }
    }

    #[test]
    fn extra_args_may_not_override_what_databuild_sets() {
        assert!(with(|r| r.extra_args = vec!["--qos=high".into(), "-N1".into()]).is_ok());
        for bad in [
            "--output=x",
            "-ox",
            "-o",
            "--job-name=x",
            "--export=NONE",
            "qos",
        ] {
            assert_eq!(
                with(|r| r.extra_args = vec![bad.into()]).unwrap_err().0,
                "slurm.extra_args",
                "{bad}"
            );
        }
    }

    #[test]
    fn ray_addresses_need_http_and_a_host() {
        for ok in [
            "http://127.0.0.1:8265",
            "https://ray.example.com",
            "http://head:8265/",
            "http://[::1]:8265",
        ] {
            assert!(check_http_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "127.0.0.1:8265",
            "ray://head:10001",
            "http://",
            "http://:8265",
            "http://head:port",
            "http://head:99999",
            "http://he ad",
            "auto",
        ] {
            assert!(check_http_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ray_options_take_graph_defaults_and_remember_where_the_address_came_from() {
        let defaults = RayOptions {
            address: Some("http://head:8265".into()),
            entrypoint_num_cpus: Some(1.0),
            ..Default::default()
        };
        let job = RayOptions {
            entrypoint_memory: Some(1 << 20),
            ..Default::default()
        }
        .or(&defaults);
        assert_eq!(job.address.as_deref(), Some("http://head:8265"));
        assert_eq!(job.address_key, Some("graph.ray.address"));
        assert_eq!(job.entrypoint_num_cpus, Some(1.0));
        assert_eq!(job.entrypoint_memory, Some(1 << 20));
        let own = RayOptions {
            address: Some("http://other:1".into()),
            ..Default::default()
        }
        .or(&defaults);
        assert_eq!(own.address_key, Some("jobs.ray.address"));
        assert_eq!(
            RayOptions::default().or(&RayOptions::default()).address_key,
            None
        );
        let negative = RayOptions {
            entrypoint_num_gpus: Some(-1.0),
            ..Default::default()
        };
        assert_eq!(
            negative.validate().unwrap_err().0,
            "ray.entrypoint_num_gpus"
        );
    }

    #[test]
    fn job_resources_override_graph_defaults_key_by_key() {
        let defaults = SlurmResources {
            partition: Some("batch".into()),
            mem: Some("1G".into()),
            extra_args: vec!["--qos=low".into()],
            ..Default::default()
        };
        let job = SlurmResources {
            mem: Some("4G".into()),
            extra_args: vec!["--nice=10".into()],
            ..Default::default()
        }
        .or(&defaults);
        assert_eq!(
            job.sbatch_args(),
            ["--mem=4G", "--partition=batch", "--qos=low", "--nice=10"]
        );
    }
}
