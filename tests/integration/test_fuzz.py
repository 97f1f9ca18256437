"""Fuzzing the name node API against its own OpenAPI description (schemathesis + Hypothesis).

Before any fuzzing the admin writes files that the fuzzing callers must not be able to change:
``/vault`` (the admin's, 0755) holds a four-block file, small ones, an empty one, a subdirectory
and a file at the end of a legal path of ~3,800 bytes of non-ASCII names; ``/shared`` (1777,
sticky like /tmp) holds an admin file among those anyone may create there. A plain user copies
two of them into places of its own (the copies share the originals' blocks). Then, against one
running cluster of this module's own:

* with no ``Authorization`` header, or a bogus one, every /v1 operation answers 401 (health 200);
* the admin fuzzes every operation that cannot remove or replace an existing file (reads, fsck,
  mkdir/create/uploads, which refuse to clobber, user creation, replica reports...), never the
  destructive ones (format, user removal, token reset, decommission);
* a plain user fuzzes every operation, the admin-only and destructive ones included (403), then
  the namespace ones again, now that its first pass left files and directories to act on;
* a plain user sends every operation that takes a body schema-valid JSON with bytes spliced in.

Half of the time, generated path, block, node, user name, mode and replication fields are aimed
at the protected files, the user's copies, their blocks, the real data nodes and real users, so
that the fuzzer does try to delete, move, chmod, chown, overwrite, copy over and re-replicate the
protected files (refused), and removes, moves or replaces the copies (allowed: that must not
release the blocks the originals still name). Every response must be below 500 and conform to
the description (status, content type, schema); every error is a JSON ``ErrorBody``. After each
run every protected file reads back with its sha256 and fsck finds no missing or corrupt block.

Checks left out, as they do not hold by design: ``positive_data_acceptance`` (the schema cannot
say which strings are valid paths, which numbers are in range or what exists: such requests get
400/404/409), ``negative_data_rejection`` (unknown query parameters and body fields are ignored,
for forward compatibility); ``missing_required_header`` and ``unsupported_method`` run in
schemathesis's coverage phase only, ``use_after_free`` and ``ensure_resource_availability`` in
stateful runs only, and ``max_response_time`` would be flaky on a loaded machine.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks

from pydfs import wire
from pydfs.client import Client
from pydfs.cluster import LocalCluster
from pydfs.namenode import api, endpoints, openapi
from tests.conftest import BLOCK_SIZE, make_cluster, node_id

# Cases per operation and generation mode (positive: schema-valid, negative: schema-violating).
ADMIN_EXAMPLES = 30
USER_EXAMPLES = 40
RAW_EXAMPLES = 30
NOBODY_EXAMPLES = 8  # with no header and an empty one; 2 with each other bogus header

CHECK_NAMES = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",  # a 2xx is replayed without and with a bogus token: both must be refused
]

USER = "fuzzer"
HOME = f"/user/{USER}"
VAULT = "/vault"
SHARED = "/shared"
# A legal path (< 4,096 bytes) whose percent-encoded query is far longer than 8 KiB.
DEEP = VAULT + "/" + "/".join(["é" * 100] * 19) + "/deep.txt"

# Never fuzzed by the admin: the destructive endpoints, and those that can remove or replace an
# existing file or change its permissions (permission bits do not bind an admin).
DESTRUCTIVE = {
    ("POST", "/fs/format"),
    ("POST", "/users/remove"),
    ("POST", "/users/reset-token"),
    ("POST", "/cluster/decommission"),
    ("POST", "/fsck/delete-orphans"),
}
REPLACES = {
    ("POST", f"/fs/{name}") for name in ("delete", "copy", "move", "chmod", "chown", "setrep")
}
MUTATING = {f"POST {wire.API}/fs/{name}" for name in ("mkdir", "create", "delete", "copy", "move")}

ENDPOINTS = {(ep.method, f"{wire.API}{ep.route}"): ep for ep in endpoints.ENDPOINTS}
HEALTH = ("GET", f"{wire.API}/health")

pytestmark = pytest.mark.timeout(300)


def access(method: str, path: str) -> api.Access:
    """Who may call an operation of the description (/v1/health is not in endpoints.ENDPOINTS)."""
    ep = ENDPOINTS.get((method, path))
    return "open" if ep is None else ep.access


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Fixture:
    cluster: LocalCluster
    user_token: str
    digests: dict[str, str]  # protected file → sha256
    pools: dict[str, list[Any]]  # field name → values to aim that field at

    @property
    def schema_url(self) -> str:
        return f"{self.cluster.url}{openapi.ROUTE}"


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    """A cluster of this module's own, its protected files written, and a plain user."""
    files = {
        f"{VAULT}/big.bin": bytes(range(256)) * (3 * BLOCK_SIZE // 256) + b"tail" * 250,
        f"{VAULT}/small.txt": b"hello, fuzzer\n",
        f"{VAULT}/empty": b"",
        f"{VAULT}/sub/nested.bin": hashlib.sha512(b"nested").digest() * 1000,
        DEEP: b"deep down\n",
        f"{SHARED}/admin-notes.txt": b"mine, not yours\n" * 100,
    }
    with make_cluster(tmp_path_factory.mktemp("fuzz")) as cluster, cluster.client() as fs:
        fs.mkdir(f"{VAULT}/sub", parents=True)
        fs.mkdir(DEEP.rsplit("/", 1)[0], parents=True)
        fs.mkdir(SHARED)
        fs.chmod(SHARED, 0o1777)
        for path, data in files.items():
            fs.write_bytes(path, data)
        assert len(fs.info(f"{VAULT}/big.bin").blocks or []) == 4
        token = fs.add_user(USER)
        # Copies the user owns share the protected files' blocks: the fuzzer may remove or
        # replace them, and that must release none of the blocks the originals still name.
        shares = {f"{VAULT}/big.bin": f"{HOME}/big.bin", f"{SHARED}/admin-notes.txt": None}
        with Client(cluster.url, token=token, ca=cluster.ca) as mine:
            copies = [mine.copy(src, dst).path for src, dst in shares.items()]
        paths = [
            *files,
            *["/", VAULT, f"{VAULT}/sub", DEEP.rsplit("/", 1)[0], SHARED, "/user", HOME],
            *[f"{HOME}/a", f"{HOME}/b.bin", f"{SHARED}/{USER}-file", *copies],
        ]
        nodes = [node_id(n) for n in cluster.datanodes]
        names = ["admin", USER, "nobody"]
        pools: dict[str, list[Any]] = {
            "path": paths,
            "src": paths,
            "dst": paths,
            "block": [b.id for p in files for b in fs.info(p).blocks or []],
            "node": nodes,
            "exclude": nodes,
            "name": names,
            "owner": names,
            "group": names,
            "mode": [0o755, 0o777, 0o1777, 0o700, 0],
            "replication": [1, 2, 3],
            "block_size": [4096, BLOCK_SIZE],
        }
        yield Fixture(cluster, token, {p: _sha(d) for p, d in files.items()}, pools)


def assert_intact(fx: Fixture) -> None:
    """Every protected file reads back unchanged, and no block anywhere is missing."""
    with fx.cluster.client() as fs:
        for path, digest in fx.digests.items():
            assert _sha(fs.read_bytes(path)) == digest, f"{path} changed"
        report = fs.fsck("/")
        assert report.missing == 0, report
        assert report.corrupt == 0, report


@pytest.fixture(scope="module")
def schema(fuzz: Fixture) -> Any:
    loaded = schemathesis.openapi.from_url(fuzz.schema_url)
    loaded.validate()  # against the OpenAPI 3.1 meta-schema
    return loaded


def assert_error_body(status: int, content_type: str, content: bytes) -> None:
    """An error is a JSON ``ErrorBody``, never a bare text or a traceback."""
    if status >= 400:
        assert content_type.startswith("application/json"), (status, content_type, content[:200])
        body = json.loads(content)
        assert isinstance(body.get("code"), str), body
        assert isinstance(body.get("message"), str), body


# --- the description ------------------------------------------------------------------------


def test_description_is_served_valid_and_complete(fuzz: Fixture, schema: Any) -> None:
    response = requests.get(fuzz.schema_url, timeout=10)  # no token: the description is open
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    spec = response.json()
    assert spec["openapi"].startswith("3.1.")
    described = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert set(ENDPOINTS) | {HEALTH} == described
    for (method, path), ep in ENDPOINTS.items():
        op = spec["paths"][path][method.lower()]
        scheme = {"node": "node", "open": None}.get(ep.access, "bearer")
        assert op.get("security") == ([{scheme: []}] if scheme else None), path
        assert {"200", "4XX", "5XX"} <= set(op["responses"]), path
        assert ("requestBody" in op) == (ep.body is not None), path
    # Every operation resolves (its $refs, its parameters) into something to generate from.
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(described)


# --- fuzzing --------------------------------------------------------------------------------


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,  # the same cases on every run: CI stays stable
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        # Every case is an HTTP call, and schemathesis's strategies are large and filtered.
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


@dataclass
class Run:
    """One caller's fuzzing: what it sent where, and what broke."""

    fx: Fixture
    schema: Any
    authorization: str | None  # the Authorization header sent (None: none)
    examples: int
    aim: bool = True
    expect: Callable[[Any, Any], None] | None = None  # extra assertion on (case, response)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    aimed: Counter[tuple[str, int]] = field(default_factory=Counter)  # at a protected path
    failures: list[str] = field(default_factory=list)

    def operations(self, keep: Callable[[str, str], bool]) -> list[Any]:
        ops = [result.ok() for result in self.schema.get_all_operations()]
        return [op for op in ops if keep(op.method.upper(), op.path)]

    def fuzz(self, operations: list[Any]) -> Run:
        load_all_checks()
        checks = CHECKS.get_by_names(CHECK_NAMES)
        with requests.Session() as session:
            for op in operations:
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    try:
                        self._fuzz_one(op, mode, checks, session)
                    except Unsatisfiable:
                        # Nothing to negate (no parameter, body or security): GET /v1/health.
                        if mode is not GenerationMode.NEGATIVE:
                            raise
                    except (AssertionError, BaseExceptionGroup) as exc:
                        self.failures.append(f"{op.label} ({mode.value}): {exc}")
        return self

    def _fuzz_one(
        self, op: Any, mode: GenerationMode, checks: list[Any], session: requests.Session
    ) -> None:
        headers = {} if self.authorization is None else {"Authorization": self.authorization}

        @_settings(self.examples)
        @given(case=op.as_strategy(generation_mode=mode), data=st.data())
        def one(case: Any, data: st.DataObject) -> None:
            aimed = self._aim(case, data) if self.aim else False
            response = case.call(session=session, headers=headers, timeout=30)
            self.statuses[(op.label, response.status_code)] += 1
            if aimed:
                self.aimed[(op.label, response.status_code)] += 1
            content_type = response.headers.get("content-type", [""])[0]
            assert_error_body(response.status_code, content_type, response.content)
            if self.expect is not None:
                self.expect(case, response)
            case.validate_response(response, checks=checks, headers=headers)

        one()

    def _aim(self, case: Any, data: st.DataObject) -> bool:
        """Half of the time, point a field that has a pool of known values at one of them
        (only where the generated value has the pool's type, so negated fields stay so).
        True if the case now names a protected file or directory."""
        aimed = False
        for part in (case.body, case.query):
            if not isinstance(part, dict):
                continue
            for name, value in list(part.items()):
                pool = self.fx.pools.get(name)
                if not pool or not data.draw(st.booleans(), label=f"aim {name}"):
                    continue
                chosen = data.draw(st.sampled_from(pool), label=name)
                if isinstance(value, list) and all(type(v) is type(chosen) for v in value):
                    part[name] = [chosen]
                elif type(value) is type(chosen):
                    part[name] = chosen
                else:
                    continue
                aimed |= isinstance(chosen, str) and chosen.startswith((VAULT, SHARED))
        return aimed

    def report(self) -> str:
        return "\n\n".join(self.failures)


def test_fuzz_without_credentials(fuzz: Fixture, schema: Any) -> None:
    """No header, a malformed one, someone else's scheme: 401 from every /v1 operation."""
    bogus: list[str | None] = [
        None,
        "",
        "Bearer",
        "Bearer not-a-token",
        f"Bearer {fuzz.user_token}x",
        "Basic YWRtaW46YWRtaW4=",
        "Node not-the-credential",
        f"Node {fuzz.cluster.admin_token}",
        f"Token {fuzz.cluster.admin_token}",
    ]

    def expect_401(case: Any, response: Any) -> None:
        wanted = 200 if case.operation.path == HEALTH[1] else 401
        assert response.status_code == wanted, case.operation.label
        if wanted == 401:
            assert response.json()["code"] == "unauthenticated"

    for index, header in enumerate(bogus):
        examples = NOBODY_EXAMPLES if index < 2 else 2
        run = Run(fuzz, schema, header, examples, aim=False, expect=expect_401)
        run.fuzz(run.operations(lambda method, path: True))
        assert not run.failures, f"Authorization: {header!r}\n{run.report()}"
    # A data node's endpoints refuse a user's token, even an admin's.
    run = Run(fuzz, schema, f"Bearer {fuzz.cluster.admin_token}", NOBODY_EXAMPLES, aim=False)
    run.expect = expect_401
    run.fuzz(run.operations(lambda method, path: access(method, path) == "node"))
    assert not run.failures, run.report()
    assert_intact(fuzz)


def test_fuzz_as_admin(fuzz: Fixture, schema: Any) -> None:
    """The most powerful caller, over every operation that cannot clobber an existing file."""

    def keep(method: str, path: str) -> bool:
        key = (method, path.removeprefix(wire.API))
        return access(method, path) != "node" and key not in DESTRUCTIVE | REPLACES

    run = Run(fuzz, schema, f"Bearer {fuzz.cluster.admin_token}", ADMIN_EXAMPLES)
    run.fuzz(run.operations(keep))
    assert not run.failures, run.report()
    # Not vacuous: the fuzzer did reach the protected files.
    assert any(status == 200 for (_, status) in run.aimed), run.aimed
    assert_intact(fuzz)


def test_fuzz_as_plain_user(fuzz: Fixture, schema: Any) -> None:
    """A plain user over every operation: it may change only what it may write."""
    user = f"Bearer {fuzz.user_token}"

    def refused_if_admin_only(case: Any, response: Any) -> None:
        sent = response.request.headers.get("Authorization")
        if access(case.operation.method.upper(), case.operation.path) == "admin" and sent == user:
            assert response.status_code == 403, case.operation.label

    run = Run(fuzz, schema, user, USER_EXAMPLES, expect=refused_if_admin_only)
    run.fuzz(run.operations(lambda method, path: True))
    # Again over the namespace, now that the first pass left copies and directories behind.
    run.fuzz(run.operations(lambda method, path: path.startswith(f"{wire.API}/fs/")))
    assert not run.failures, run.report()
    # Not vacuous: the fuzzer did change things, and did aim its changes at protected files.
    assert any(label in MUTATING and s == 200 for (label, s) in run.statuses), run.statuses
    assert any(label in MUTATING and s == 403 for (label, s) in run.aimed), run.aimed
    assert_intact(fuzz)


def test_fuzz_raw_bodies(fuzz: Fixture, schema: Any) -> None:
    """Schema-valid JSON with random bytes spliced in (invalid UTF-8 inside a string, say):
    refused with a JSON error, never a 5xx."""
    failures: list[str] = []
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {fuzz.user_token}"
        session.headers["Content-Type"] = "application/json"
        for result in schema.get_all_operations():
            op = result.ok()
            ep = ENDPOINTS.get((op.method.upper(), op.path))
            if ep is None or ep.body is None:
                continue
            try:
                _spliced_bodies(fuzz.cluster.url, op, session)()
            except AssertionError as exc:
                failures.append(f"{op.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert_intact(fuzz)


def _spliced_bodies(base: str, op: Any, session: requests.Session) -> Callable[[], None]:
    @_settings(RAW_EXAMPLES)
    @given(case=op.as_strategy(), at=st.floats(0, 1), junk=st.binary(min_size=1))
    def one(case: Any, at: float, junk: bytes) -> None:
        raw = json.dumps(case.body, ensure_ascii=False).encode()
        cut = round(at * len(raw))
        body = raw[:cut] + junk + raw[cut:]
        response = session.request(op.method, base + case.formatted_path, data=body, timeout=30)
        assert response.status_code < 500, (response.status_code, response.text)
        content_type = response.headers.get("Content-Type", "")
        assert_error_body(response.status_code, content_type, response.content)

    return one
