#!/usr/bin/env python3
"""The README's references say what the programs do.

    check-docs.py README DMSGD DMSGCTL OPENAPI

* Configuration: every key `dmsgd gen-config` writes has a row with its default, and the
  SIGHUP column is what a running dmsgd does: the daemon is started, every key is changed in
  its file, and after SIGHUP the keys it logs as "need a restart" must be exactly the rows
  marked "no".
* Admin API: every operation of api/openapi.yaml has a row, and no row names another.
* Metrics: every family of openapi.yaml's Metrics table, and every family dmsgd's code
  documents, has a row.
* dmsgctl: every command of `dmsgctl --help` has a row.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

errors = []
README_PATH = "README.md"


def error(message):
    errors.append(message)
    print(f"check-docs: {message}", file=sys.stderr)


def section(readme, title):
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    if not match:
        error(f"README has no section \"## {title}\"")
        return ""
    return match.group(1)


def table_rows(text):
    """First cells (and the whole row) of every table row."""
    rows = []
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows.append(cells)
    return rows


# ---------------------------------------------------------------------------------------------
# Configuration

def flatten(obj, prefix=""):
    out = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def changed_value(key, value):
    """A different valid value for every key, for the SIGHUP run."""
    special = {
        "discovery": "http://127.0.0.1:1",
        "public_address": "127.0.0.1:1",
        "health_endpoint_address": "127.0.0.1:0",
        "log_level": "debug",
        "state_dir": "state-elsewhere",
        "admin_socket": "elsewhere.sock",
        "admin_address": "127.0.0.1:0",
        "update_interval": 120000000000,
        "max_sessions": 1000,
    }
    if key in special:
        return special[key]
    if isinstance(value, bool):
        return not value
    if key == "limits.max_sessions_hard":
        return 5000                              # 0 or at least max_sessions
    if isinstance(value, int):
        return value - 1 if value > 0 else value + 1  # inside every range
    raise ValueError(key)


def reload_restart_keys(dmsgd, defaults, tmp):
    """Starts dmsgd, changes every key in its file, sends SIGHUP; returns the keys it says need
    a restart, and the keys it was given."""
    start = {k: v for k, v in defaults.items() if k not in ("public_key", "secret_key")}
    start.update({
        "local_address": "127.0.0.1:0",
        "embedded_discovery_address": "127.0.0.1:0",
        "state_dir": "state",
        "public_key": defaults["public_key"],
        "secret_key": defaults["secret_key"],
    })
    path = os.path.join(tmp, "config.json")
    with open(path, "w") as f:
        json.dump(start, f)
    log_path = os.path.join(tmp, "dmsgd.log")
    log = open(log_path, "w")
    proc = subprocess.Popen([dmsgd, "-c", path], stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while "dmsgd started" not in open(log_path).read():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dmsgd did not start:\n" + open(log_path).read())
            time.sleep(0.1)
        def fresh_keys():
            return json.loads(subprocess.run([dmsgd, "gen-config"], check=True,
                                             capture_output=True, text=True).stdout)
        new_keys, peer_keys = fresh_keys(), fresh_keys()
        changed = dict(start)
        for key in start:
            if key in ("public_key", "secret_key"):
                changed[key] = new_keys[key]
            elif key == "peers":
                changed[key] = [{"public_key": peer_keys["public_key"],
                                 "address": "127.0.0.1:1"}]
            elif key == "limits":
                changed[key] = {k: changed_value(f"limits.{k}", v)
                                for k, v in start["limits"].items()}
                # keep the cross-key rule: burst >= rate
                changed[key]["stream_requests_burst"] = max(
                    changed[key]["stream_requests_burst"],
                    changed[key]["stream_requests_per_second"])
            elif key == "local_address":
                changed[key] = "127.0.0.2:0"
            elif key == "embedded_discovery_address":
                changed[key] = "127.0.0.2:0"
            else:
                changed[key] = changed_value(key, start[key])
        with open(path, "w") as f:
            json.dump(changed, f)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        text = ""
        while "configuration reloaded" not in text and "reload failed" not in text:
            if time.monotonic() > deadline:
                raise RuntimeError("no reload in the log:\n" + text)
            time.sleep(0.1)
            text = open(log_path).read()
        if "reload failed" in text:
            raise RuntimeError("dmsgd refused the changed config:\n" + text)
        time.sleep(0.2)
        text = open(log_path).read()
        match = re.search(r'need a restart" keys=(\S+)', text)
        restart = set(match.group(1).split(",")) if match else set()
        # Field names that differ from the file's keys.
        restart = {"update_interval" if k == "update_interval_ns" else k for k in restart}
        if "public_key" in restart:
            restart.add("secret_key")
        return restart
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def check_config(readme, dmsgd):
    text = section(readme, "Configuration reference")
    rows = {}
    for cells in table_rows(text):
        if len(cells) == 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    gen = json.loads(subprocess.run([dmsgd, "gen-config"], check=True, capture_output=True,
                                    text=True).stdout)
    flat = flatten(gen)
    for key, value in flat.items():
        if key not in rows:
            error(f"config key {key} (written by dmsgd gen-config) has no row in the README")
            continue
        shown = rows[key][1]
        if key in ("public_key", "secret_key"):
            expected = "none"
        else:
            expected = "`" + json.dumps(value) + "`"
        if shown != expected:
            error(f"config key {key}: the README says default {shown}, dmsgd's is {expected}")
    for key in rows:
        if key not in flat:
            error(f"the README documents config key {key}, which dmsgd gen-config does not write")
    # The newer reference keys dmsgd reads and ignores (config.c's ignored_keys) are listed.
    config_c = os.path.join(os.path.dirname(os.path.abspath(README_PATH)), "daemon", "config.c")
    if os.path.exists(config_c):
        block = re.search(r"ignored_keys\[\] = \{(.*?)\n\};", open(config_c).read(), re.S)
        for key in re.findall(r'\{"([a-z0-9_]+)"', block.group(1) if block else ""):
            if f"`{key}`" not in text:
                error(f"config.c ignores the reference key {key}; the README does not list it")
    with tempfile.TemporaryDirectory(prefix="dmsgd-docs.") as tmp:
        restart = reload_restart_keys(dmsgd, gen, tmp)
    for key in flat:
        if key not in rows:
            continue
        says = rows[key][2]
        does = "no" if key in restart else "yes"
        if says != does:
            error(f"config key {key}: the README says SIGHUP {says!r}, dmsgd does {does!r}")
    print(f"check-docs: {len(flat)} config keys checked against dmsgd "
          f"(SIGHUP says restart for: {', '.join(sorted(restart))})")


def check_shipped_configs(repo, dmsgd):
    """The configs deploy/ ships are gen-config's output with a few keys adjusted: every other
    key must hold today's default, or an install would pin a stale value."""
    gen = flatten(json.loads(subprocess.run([dmsgd, "gen-config"], check=True,
                                            capture_output=True, text=True).stdout))
    del gen["public_key"], gen["secret_key"]
    shipped = {
        "deploy/dmsgd.json": {"admin_socket"},
        "deploy/docker/config.json": {"local_address", "embedded_discovery_address"},
    }
    for name, adjusted in shipped.items():
        conf = flatten(json.load(open(os.path.join(repo, name))))
        for key in sorted(set(gen) | set(conf)):
            if key in adjusted:
                continue
            if key not in conf:
                error(f"{name} lacks {key} (dmsgd gen-config writes it: {json.dumps(gen[key])})")
            elif key not in gen:
                error(f"{name} has {key}, which dmsgd no longer writes")
            elif conf[key] != gen[key]:
                error(f"{name} pins {key} = {json.dumps(conf[key])}; the default is now "
                      f"{json.dumps(gen[key])}: update the file")
    print(f"check-docs: {', '.join(shipped)} checked against today's defaults")


# ---------------------------------------------------------------------------------------------
# Admin API, metrics, dmsgctl

def openapi_operations(openapi):
    ops = set()
    path = None
    for line in open(openapi):
        m = re.match(r"^  (/\S*):\s*$", line)
        if m:
            path = m.group(1)
            continue
        m = re.match(r"^    (get|put|post|delete|patch):\s*$", line)
        if m and path:
            ops.add(f"{m.group(1).upper()} {path}")
        if re.match(r"^\S", line) and not line.startswith("paths:"):
            path = None
    return ops


def check_api(readme, openapi):
    text = section(readme, "Admin API")
    documented = set()
    for cells in table_rows(text):
        for op in re.findall(r"`((?:GET|PUT|POST|DELETE|PATCH) /\S*)`", cells[0]):
            documented.add(op)
    spec = openapi_operations(openapi)
    if not spec:
        error(f"no operations found in {openapi}")
    for op in sorted(spec - documented):
        error(f"the admin API operation {op} has no row in the README")
    for op in sorted(documented - spec):
        error(f"the README documents {op}, which {openapi} does not define")
    print(f"check-docs: {len(spec)} admin API operations documented")


def check_metrics(readme, openapi, repo):
    text = section(readme, "Metrics")
    documented = {c[0].strip("`") for c in table_rows(text) if c[0].startswith("`")}
    spec = set(re.findall(r"^\s+\| `((?:dmsgd|process)_[a-z_]+)` \|", open(openapi).read(),
                          re.M))
    code = set()
    metrics_text = os.path.join(repo, "daemon", "metrics_text.c")
    if os.path.exists(metrics_text):
        code = set(re.findall(r'\{"((?:dmsgd|process)_[a-z_]+)",', open(metrics_text).read()))
    for name in sorted((spec | code) - documented):
        error(f"metric {name} has no row in the README")
    for name in sorted(documented - spec - code):
        error(f"the README documents metric {name}, which neither openapi.yaml nor dmsgd has")
    print(f"check-docs: {len(spec | code)} metric families documented")


def check_dmsgctl(readme, dmsgctl):
    text = section(readme, "dmsgctl reference")
    documented = " ".join(c[0] for c in table_rows(text))
    out = subprocess.run([dmsgctl, "--help"], capture_output=True, text=True).stdout
    commands = set()
    in_commands = False
    for line in out.splitlines():
        if line == "COMMANDS":
            in_commands = True
        elif in_commands and line and not line.startswith(" "):
            break
        elif in_commands:
            m = re.match(r"^    dmsgctl ([a-z-]+(?: [a-z]+)?)", line)
            if m:
                commands.add(m.group(1))
    if not commands:
        error("dmsgctl --help lists no commands")
    for command in sorted(commands):
        noun = command.split()[0]
        if not re.search(rf"`{re.escape(command)}\b", documented) and \
                not re.search(rf"`{re.escape(noun)}\b", documented):
            error(f"dmsgctl command \"{command}\" has no row in the README")
    print(f"check-docs: {len(commands)} dmsgctl commands documented")


def main():
    if len(sys.argv) != 5:
        print("usage: check-docs.py README DMSGD DMSGCTL OPENAPI", file=sys.stderr)
        sys.exit(2)
    global README_PATH
    readme_path, dmsgd, dmsgctl, openapi = sys.argv[1:]
    README_PATH = readme_path
    readme = open(readme_path).read()
    repo = os.path.dirname(os.path.abspath(readme_path))
    check_config(readme, dmsgd)
    check_shipped_configs(repo, dmsgd)
    check_api(readme, openapi)
    check_metrics(readme, openapi, repo)
    check_dmsgctl(readme, dmsgctl)
    if errors:
        print(f"check-docs: {len(errors)} problem(s)", file=sys.stderr)
        sys.exit(1)
    print("check-docs: the README's references match the programs")


if __name__ == "__main__":
    main()
