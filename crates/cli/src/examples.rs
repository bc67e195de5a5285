//! The examples at the end of each command's `--help` (and man page).

pub const LAB: &str = "Examples:\n  ferry lab up --hosts 3 --vms 6\n  ferry lab check";
pub const LAB_UP: &str = "Examples:\n  ferry lab up --hosts 3 --vms 6\n  \
    ferry lab up --dir /tmp/lab2 --hosts 2 --vms 2 --mem 256 --link 32 --transport tcp";
pub const LAB_STATUS: &str = "Examples:\n  ferry lab status\n  ferry lab status --dir /tmp/lab2 --output json";
pub const LAB_CHECK: &str = "Examples:\n  ferry lab check\n  ferry lab check --allow-restart vm-3";
pub const LAB_DOWN: &str = "Examples:\n  ferry lab down\n  ferry lab down --dir /tmp/lab2 --purge";
pub const INVENTORY: &str =
    "Examples:\n  ferry inventory\n  ferry inventory --cluster /etc/ferry/cluster.toml --output json";
pub const MOVE: &str = "Examples:\n  ferry move vm-1 --to host-b\n  \
    ferry move db-1 --to host-c --postcopy --max-downtime 300 --compression zstd";
pub const PREVIEW: &str = "Examples:\n  ferry preview examples/drain-host-a.toml\n  \
    ferry preview patch.toml --cluster sim:fleet.toml --output json";
pub const MIGRATE: &str = "Examples:\n  ferry migrate examples/drain-host-a.toml\n  \
    ferry migrate plan.toml --deadline 22:00 --ignore cpu-model";
pub const RESUME: &str = "Examples:\n  ferry resume r-20261123-203021-cd34\n  \
    ferry resume r-20261123-203021-cd34 --hook-done";
pub const ABORT: &str = "Examples:\n  ferry abort r-20261123-203021-cd34\n  \
    ferry abort r-20261123-203021-cd34 --wait 60";
pub const DRAIN: &str = "Examples:\n  ferry drain host-a\n  ferry drain host-a --return-after ./upgrade-host.sh";
pub const ROLL: &str = "Examples:\n  ferry preview patch.toml   # the waves first\n  \
    ferry roll patch.toml --yes --deadline +6h";
pub const TAG: &str = "Examples:\n  ferry tag db-1 maintenance=shutdown\n  ferry tag db-1 --remove maintenance";
pub const ROLLBACK: &str = "Examples:\n  ferry rollback r-20261123-203021-cd34\n  \
    ferry rollback r-20261123-203021-cd34 --from-hypervisor";
pub const CLEANUP: &str = "Examples:\n  ferry cleanup r-20261123-203021-cd34 --dry-run\n  ferry cleanup --vm vm-3";
pub const RUNS: &str = "Examples:\n  ferry runs\n  ferry runs --output json";
pub const STATUS: &str = "Examples:\n  ferry status\n  ferry status r-20261123-203021-cd34 --output json";
pub const REPORT: &str = "Examples:\n  ferry report r-20261123-203021-cd34\n  \
    ferry report r-20261123-203021-cd34 --format html -o report.html";
pub const SERVE: &str = "Examples:\n  ferry serve --listen 0.0.0.0:8340 --token-file /etc/ferry/tokens \
    --state postgres://ferry@db/ferry\n  \
    curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8340/api/runs";
pub const SIM: &str = "Examples:\n  ferry sim gen --hosts 1000 --vms 10000 -o fleet.toml\n  \
    ferry preview plan.toml --cluster sim:fleet.toml";
pub const SIM_GEN: &str = "Examples:\n  ferry sim gen --hosts 1000 --vms 10000 -o fleet.toml\n  \
    ferry sim gen --hosts 40 --vms 400 --seed 7 --fill 0.8 -o small.toml";
pub const COMPLETIONS: &str = "Examples:\n  ferry completions bash > /etc/bash_completion.d/ferry\n  \
    ferry completions zsh > ~/.zfunc/_ferry";
pub const MAN: &str = "Examples:\n  ferry man | man -l -\n  ferry man --dir /usr/local/share/man/man1";
