//! Where a job runs (`executor` in `databuild.toml`) and the cluster resources it asks
//! for (`[jobs.slurm]`, defaults in `[graph.slurm]`), checked when the file is loaded.

use serde::Deserialize;

/// The executors a job can name.
pub const EXECUTORS: [&str; 2] = ["local", "slurm"];

/// Where a job's `exec` runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum JobExecutor {
    /// A process group on this machine (the default).
    #[default]
    Local,
    /// One Slurm batch job per job run, submitted with `sbatch`.
    Slurm(SlurmResources),
}

impl JobExecutor {
    /// The executor's name, as written in the graph file.
    pub fn name(&self) -> &'static str {
        match self {
            JobExecutor::Local => "local",
            JobExecutor::Slurm(_) => "slurm",
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
