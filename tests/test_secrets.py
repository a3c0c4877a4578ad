"""No credential reaches a file, a script, a log, the manifest, the run log, a marker or the terminal.

A unique secret is planted through every way the tool accepts one: ``--set storage_options.KEY=...``
(``key``, ``secret``, ``token``, ``password``, nested ``client_kwargs``, a protocol's own mapping, an
endpoint with a password), the config file's ``storage_options:``, the environment
(``AWS_SECRET_ACCESS_KEY``, which tasks read), ``slurm.setup`` / ``slurm.extra_sbatch`` lines and URLs.
Then every byte written under the output and the work folder (scripts, logs, ``run.json``, markers,
manifest, run log, shards; ``.zst`` and ``.gz`` files decompressed) and every byte printed is searched
for it, after a local run, ``reorder task``, ``--executor slurm --dry-run``, a real Slurm run and a Ray
run, the credentials being moto's real ones (tests/s3_server.py) so that they are used where it matters.
What cannot reach a cluster's tasks safely is refused in one line that does not repeat it.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
import zstandard

from reorder_cli.util import store

from .conftest import invoke, one_line_error, reorder
from .test_stages import run_as_tasks

REGION = "us-east-1"
SETS = ["shard_rows=150", "format=jsonl"]
TASKS = ["rewrite=out-of-core", "memory_limit=1", "shard_rows=150", "format=jsonl"]


def plant() -> str:
    return f"planted-{uuid.uuid4().hex}"


def _readable(path: Path) -> bytes:
    data = path.read_bytes()
    try:
        if path.name.endswith(".zst"):
            return data + zstandard.ZstdDecompressor().stream_reader(data).read()
        if path.name.endswith(".gz"):
            return data + gzip.decompress(data)
    except Exception:  # noqa: BLE001 - a file cut short: its raw bytes are searched all the same
        pass
    return data


def leaks(secrets: list[str], roots: list[Path], texts: list[str]) -> list[str]:
    """Where any of ``secrets`` shows: a file under ``roots`` (every byte, compressed ones decompressed too)
    or one of ``texts`` (what was printed)."""
    found = []
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            data = _readable(path)
            found += [f"{path}: {s}" for s in secrets if s.encode() in data]
    for k, text in enumerate(texts):
        found += [f"printed text {k}: {s}" for s in secrets if s in text]
    return found


def written(tmp_path: Path) -> list[Path]:
    """Everything under ``tmp_path`` but the user's config files (``conf``)."""
    return [p for p in tmp_path.iterdir() if p.name != "conf"]


def printed(result) -> list[str]:
    return [result.stdout, result.stderr]


@pytest.fixture
def bucket(s3_server) -> str:
    return s3_server.bucket(f"sec-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def s3_inputs(s3_server, bucket, jsonl_corpus) -> list[str]:
    return s3_server.upload(jsonl_corpus.files, bucket, "in")


def config(tmp_path: Path, options: dict | None = None) -> Path:
    """The user's config file, in ``tmp_path/conf`` (the one place a credential may be: :func:`written`
    leaves it out)."""
    path = tmp_path / "conf" / "cfg.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump({"score_field": "score", "seed": 42,
                                    **({"storage_options": options} if options else {})}))
    return path


def where(s3_server) -> dict:
    """The storage_options that say where moto is (no credential)."""
    return {"endpoint_url": s3_server.endpoint, "client_kwargs": {"region_name": REGION}}


def credentials_in_the_environment(monkeypatch, s3_server) -> None:
    """What tasks use: the keys in their environment (the endpoint comes from run.json)."""
    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()


# ------------------------------------------------------------------ the search itself (negative control)


def test_the_search_finds_a_planted_secret_in_a_file_a_compressed_file_and_printed_text(tmp_path):
    secret = plant()
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.log").write_text(f"key={secret}\n")
    (tmp_path / "a" / "y.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(secret.encode() * 3))
    (tmp_path / "a" / "clean.txt").write_text("nothing here")
    found = leaks([secret], [tmp_path / "a"], ["nothing", f"error: {secret}"])
    assert found == [f"{tmp_path / 'a' / 'b' / 'x.log'}: {secret}", f"{tmp_path / 'a' / 'y.jsonl.zst'}: {secret}",
                     f"printed text 1: {secret}"]
    assert leaks([plant()], [tmp_path / "a"], ["nothing"]) == []


# ------------------------------------------------------------------ which options are credentials


def test_shareable_keeps_where_the_store_is_and_drops_every_credential_at_every_depth():
    secrets = [plant() for _ in range(11)]
    options = {
        "endpoint_url": "http://minio:9000", "anon": False, "profile": "team", "key": secrets[0],
        "secret": secrets[1], "token": secrets[2], "password": secrets[3], "username": secrets[4],
        "client_kwargs": {"region_name": REGION, "aws_secret_access_key": secrets[5],
                          "aws_session_token": secrets[6]},
        "config_kwargs": {"s3": {"addressing_style": "path"}, "signature_version": "s3v4"},
        "s3": {"endpoint_url": f"http://user:{secrets[7]}@minio:9000", "account_key": secrets[8]},
        "https": {"client_kwargs": {"headers": {"Authorization": secrets[9], "Accept": "x"}}},
        "default_block_size": 1024, "sas_token": secrets[10],
    }
    shared = store.shareable(options)
    assert not [s for s in secrets if s in json.dumps(shared)]
    assert shared == {"endpoint_url": "http://minio:9000", "anon": False, "profile": "team",
                      "client_kwargs": {"region_name": REGION},
                      "config_kwargs": {"s3": {"addressing_style": "path"}, "signature_version": "s3v4"},
                      "s3": {}, "https": {"client_kwargs": {"headers": {"Accept": "x"}}}}
    assert store.secret_names(options) == [f"storage_options.{k}" for k in (
        "key", "secret", "token", "password", "username", "client_kwargs.aws_secret_access_key",
        "client_kwargs.aws_session_token", "s3.endpoint_url", "s3.account_key",
        "https.client_kwargs.headers.Authorization", "sas_token")]


def test_a_store_error_repeats_no_credential_not_even_an_endpoints_password():
    secret, password = plant(), plant()
    store.configure({"secret": secret, "endpoint_url": f"http://me:{password}@minio:9000"})
    try:
        error = store.error("s3://b/x", PermissionError(f"denied for {secret} at http://me:{password}@minio:9000"))
    finally:
        store.configure({})
    assert secret not in str(error) and password not in str(error) and "http://me:***@minio:9000" in str(error)


# ------------------------------------------------------------------ refused in one line


WAYS = {
    "secret": lambda s: [f"storage_options.secret={s}"],
    "key": lambda s: [f"storage_options.key={s}"],
    "token": lambda s: [f"storage_options.token={s}"],
    "password": lambda s: [f"storage_options.password={s}"],
    "client_kwargs": lambda s: [f"storage_options.client_kwargs={{region_name: {REGION}, aws_secret_access_key: {s}}}"],
    "dotted client_kwargs": lambda s: [f"storage_options.client_kwargs.aws_session_token={s}"],
    "protocol mapping": lambda s: [f"storage_options.s3={{secret: {s}}}"],
    "whole section": lambda s: [f"storage_options={{endpoint_url: 'http://minio:9000', key: {s}}}"],
    "endpoint password": lambda s: [f"storage_options.endpoint_url=http://me:{s}@minio:9000"],
}


@pytest.mark.parametrize("executor", ["slurm", "ray"])
@pytest.mark.parametrize("way", sorted(WAYS))
def test_a_credential_set_on_the_command_line_is_refused_for_a_cluster(tmp_path, jsonl_corpus, executor, way):
    """``--set`` of a credential with ``--executor slurm`` (it would be written into the sbatch scripts)
    or ``ray`` (its tasks would not get it): one line naming the option and how to pass credentials,
    never its value; nothing is written."""
    secret = plant()
    extra = ["--executor", executor, *(["--dry-run"] if executor == "slurm" else [])]
    result = reorder(config(tmp_path), jsonl_corpus.files, tmp_path / "out", method="str", ok=False,
                     sets=[*SETS, *WAYS[way](secret)], extra=extra)
    line = one_line_error(result)
    assert line.startswith("error: --set storage_options.") and f"--executor {executor}" in line
    assert "AWS_SECRET_ACCESS_KEY" in line and "profile" in line
    assert leaks([secret], written(tmp_path), printed(result)) == []
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key,line", [
    ("setup", "export AWS_SECRET_ACCESS_KEY={}"),
    ("setup", "GOOGLE_OAUTH_TOKEN='{}' python -c pass"),
    ("extra_sbatch", "--export=ALL,AWS_SESSION_TOKEN={}"),
])
def test_a_slurm_line_that_sets_a_secret_variable_is_refused(tmp_path, jsonl_corpus, key, line):
    secret = plant()
    path = tmp_path / "slurm.yaml"
    path.write_text(yaml.safe_dump({"score_field": "score", "slurm": {key: [line.format(secret)]}}))
    result = reorder(path, jsonl_corpus.files, tmp_path / "out", method="str", sets=SETS, ok=False,
                     extra=["--executor", "slurm", "--dry-run"])
    assert one_line_error(result).startswith(f"error: slurm.{key}: sets ")
    assert leaks([secret], [tmp_path / "out"], printed(result)) == [] and not (tmp_path / "out").exists()


def test_a_slurm_line_that_reads_a_secret_variable_from_elsewhere_is_kept(tmp_path, jsonl_corpus):
    """Positive twin: ``$(...)`` or ``$VAR`` is not the credential, and ``--export=NAME`` passes it on."""
    path = tmp_path / "slurm.yaml"
    path.write_text(yaml.safe_dump({"score_field": "score", "slurm": {
        "setup": ["export AWS_SECRET_ACCESS_KEY=$(cat ~/.aws/secret)", "export AWS_SESSION_TOKEN=\"$TOKEN\""],
        "extra_sbatch": ["--export=ALL,AWS_SECRET_ACCESS_KEY"]}}))
    reorder(path, jsonl_corpus.files, tmp_path / "out", method="str", sets=SETS,
            extra=["--executor", "slurm", "--dry-run"])
    assert "export AWS_SECRET_ACCESS_KEY=$(cat ~/.aws/secret)" in (tmp_path / "out/.reorder/slurm/keys.sh").read_text()


def test_a_url_with_a_password_is_refused_without_repeating_it(tmp_path, jsonl_corpus):
    secret = plant()
    result = reorder(config(tmp_path), [f"https://me:{secret}@example.org/x.jsonl"], tmp_path / "out",
                     method="str", sets=SETS, ok=False)
    line = one_line_error(result)
    assert line.startswith("error: https://me:***@example.org/x.jsonl: a password in a URL")
    assert leaks([secret], written(tmp_path), printed(result)) == [] and not (tmp_path / "out").exists()


# ------------------------------------------------------------------ runs that use the credentials


def test_local_runs_tasks_and_a_slurm_dry_run_write_and_print_no_credential(tmp_path, s3_server, s3_inputs,
                                                                           monkeypatch):
    """Inputs on moto. A Slurm dry run with the credentials in the config file (a protocol's own mapping)
    plans the run; every task then runs by ``reorder task`` with the keys in its environment only; the
    local executor publishes with the credentials given by ``--set`` (in process: allowed), work kept;
    a wrong secret by ``--set`` is refused by the store in one line without it."""
    key, secret = s3_server.key, s3_server.secret
    texts: list[str] = []
    in_file = config(tmp_path, {**where(s3_server), "s3": {"key": key, "secret": secret}})
    out = tmp_path / "out"
    dry = reorder(in_file, s3_inputs, out, method="saw", sets=TASKS, extra=["--executor", "slurm", "--dry-run"])
    texts += printed(dry)
    assert "publish.sh" in dry.stdout or "submit.sh" in dry.stdout  # the scripts were printed
    spec = json.loads((out / ".reorder" / "run.json").read_text())["config"]["storage_options"]
    assert spec == {**where(s3_server), "s3": {}}  # where the store is reached tasks, not who we are

    credentials_in_the_environment(monkeypatch, s3_server)
    assert run_as_tasks(out) > 7
    texts += printed(invoke("status", out)) + printed(invoke("task", out))

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    by_set = [f"storage_options.key={key}", f"storage_options.secret={secret}"]
    done = reorder(config(tmp_path, where(s3_server)), s3_inputs, out, method="saw", sets=[*TASKS, *by_set],
                   extra=["--keep-work"])
    texts += printed(done)
    assert (out / ".manifest.json").is_file() and (out / ".reorder" / "logs").is_dir()
    texts += printed(invoke("stats", out))

    wrong = plant()
    refused = reorder(config(tmp_path, where(s3_server)), s3_inputs, tmp_path / "o2", method="str", ok=False,
                      sets=[*SETS, f"storage_options.key={key}", f"storage_options.secret={wrong}"])
    assert "access denied" in one_line_error(refused)
    texts += printed(refused)
    assert leaks([key, secret, wrong], written(tmp_path), texts) == [], "a credential was written or printed"


def _credentials_env(s3_server) -> dict[str, str]:
    return {**os.environ, "AWS_ACCESS_KEY_ID": s3_server.key, "AWS_SECRET_ACCESS_KEY": s3_server.secret}


@pytest.mark.slurm
def test_a_real_slurm_run_writes_no_credential(tmp_path, s3_server, s3_inputs):
    """The driver and the publish job read the credentials from the config file; the jobs' tasks from the
    environment sbatch passes on. Scripts, logs, run.json, markers, manifest, run log: none holds them."""
    from .test_slurm import _cli, _slurm_up

    why = _slurm_up()
    if why:
        pytest.skip(why)
    cfg = config(tmp_path, {**where(s3_server), "key": s3_server.key, "secret": s3_server.secret})
    args = ["run", cfg, "--method", "saw", "--output", "out", "--keep-work", "--executor", "slurm", "--wait"]
    for url in s3_inputs:
        args += ["--input", url]
    for s in [*TASKS, "slurm.mem=1G"]:
        args += ["--set", s]
    done = _cli(tmp_path, *args, env=_credentials_env(s3_server))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / ".manifest.json").is_file() and list((tmp_path / "out/.reorder/slurm").glob("*.sh"))
    status = _cli(tmp_path, "status", "out")
    assert leaks([s3_server.key, s3_server.secret], [tmp_path / "out"],
                 [done.stdout, done.stderr, status.stdout, status.stderr]) == []


@pytest.mark.ray
def test_a_ray_run_writes_no_credential(tmp_path, s3_server, s3_inputs, monkeypatch):
    """The driver has the credentials from the config file, the workers from their environment; neither
    the output, the work folder, what was printed nor Ray's own session logs hold them."""
    ray = pytest.importorskip("ray")
    credentials_in_the_environment(monkeypatch, s3_server)  # before ray.init: the workers inherit it
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        session = Path(ray._private.worker._global_node.get_session_dir_path())
        cfg = config(tmp_path, {**where(s3_server), "key": s3_server.key, "secret": s3_server.secret})
        out = tmp_path / "out"
        done = reorder(cfg, s3_inputs, out, method="saw", sets=TASKS, extra=["--executor", "ray", "--keep-work"])
        assert (out / ".manifest.json").is_file() and (out / ".reorder" / "run.json").is_file()
        found = leaks([s3_server.key, s3_server.secret], [*written(tmp_path), session / "logs"], printed(done))
    finally:
        ray.shutdown()
    assert found == []


def test_the_environment_is_not_copied_into_the_slurm_scripts(tmp_path, jsonl_corpus):
    """Credentials in the environment of the command stay there: the scripts name no value of it."""
    secret = plant()
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": secret}
    args = ["run", config(tmp_path), "--method", "str", "--output", tmp_path / "out", "--executor", "slurm",
            "--dry-run", *[x for f in jsonl_corpus.files for x in ("--input", f)],
            *[x for s in SETS for x in ("--set", s)]]
    done = subprocess.run([sys.executable, "-m", "reorder_cli.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert leaks([secret], [tmp_path / "out"], [done.stdout, done.stderr]) == []


def test_a_malformed_set_of_a_storage_option_is_one_line_without_its_value(tmp_path, jsonl_corpus):
    secret = plant()
    result = reorder(config(tmp_path), jsonl_corpus.files, tmp_path / "out", method="str", ok=False,
                     sets=[*SETS, f"storage_options.secret:{secret}"])
    assert one_line_error(result) == "error: --set expects key=value, got 'storage_options...'"
    assert leaks([secret], written(tmp_path), printed(result)) == []
