"""Logs Ingestion sink against the in-repo fake (tests/fakes/logs_ingestion.py) with real MSAL over HTTPS."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.errors import TransientSinkError
from agent.model import Event
from agent.simulator.server import thumbprint_sha1
from agent.sinks import SinkContext
from agent.sinks.http.logs_ingestion import LogsIngestionSink
from tests.fakes import logs_ingestion as L
from tests.fakes.logs_ingestion import FakeLogsIngestion
from tests.sinks.conftest import alert, build, config, events
from tests.support.certs import PASSPHRASE, make_cert


async def test_posts_json_array_with_token(fake_logs: FakeLogsIngestion, ctx: SinkContext) -> None:
    """Rows arrive as sent; one token serves several calls."""
    sink = build(fake_logs.sink_table(), ctx)
    await sink.start()
    evs = events(5)
    assert await sink.send(evs) == type(await sink.send(events(2, start=5)))()
    assert [r["id"] for r in fake_logs.rows] == [e.alert["id"] for e in events(7)]
    assert fake_logs.token_requests == 1
    await sink.aclose()
    await sink.aclose()


async def test_splits_at_one_megabyte(fake_logs: FakeLogsIngestion, ctx: SinkContext) -> None:
    """A 3 MB batch goes out as calls of at most 1 MB each (uncompressed)."""
    sink = build(fake_logs.sink_table(), ctx)
    evs = events(30, description="d" * 100_000)
    result = await sink.send(evs)
    assert not result.rejected and not result.retry
    assert len(fake_logs.rows) == 30
    assert len(fake_logs.calls) >= 3 and max(fake_logs.calls) <= L.LIMIT
    await sink.aclose()


async def test_single_oversize_event_rejected(fake_logs: FakeLogsIngestion, ctx: SinkContext) -> None:
    """An event that alone exceeds the call limit is dead-lettered, the rest delivered."""
    sink = build(fake_logs.sink_table(), ctx)
    big = alert(0, description="x" * 1_100_000)
    import orjson

    result = await sink.send([Event(big, orjson.dumps(big)), *events(2, start=1)])
    assert list(result.rejected) == [0]
    assert len(fake_logs.rows) == 2
    await sink.aclose()


async def test_throttled_honours_retry_after(fake_logs: FakeLogsIngestion, ctx: SinkContext) -> None:
    """429 raises TransientSinkError carrying Retry-After."""
    fake_logs.faults.append(L.Fault(429, "TooManyRequests", {"Retry-After": "17"}))
    sink = build(fake_logs.sink_table(), ctx)
    with pytest.raises(TransientSinkError) as info:
        await sink.send(events(1))
    assert info.value.retry_after == 17
    await sink.aclose()


async def test_later_call_failure_retries_only_the_rest(
    fake_logs: FakeLogsIngestion, ctx: SinkContext
) -> None:
    """Once a call succeeded, a transient failure of a later one marks only its events for retry."""
    sink = build(fake_logs.sink_table(max_body_bytes=250_000), ctx)
    assert isinstance(sink, LogsIngestionSink)
    evs = events(6, description="d" * 100_000)
    groups, _ = sink.groups(evs)
    assert len(groups) == 3
    real = sink._post
    calls = 0

    async def flaky(batch):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 2:
            fake_logs.faults.append(L.UNAVAILABLE)
        return await real(batch)

    sink._post = flaky  # type: ignore[method-assign]
    result = await sink.send(evs)
    assert result.retry == [*groups[1], *groups[2]] and not result.rejected
    assert len(fake_logs.rows) == len(groups[0])
    await sink.aclose()


async def test_expired_token_refreshed_once(fake_logs: FakeLogsIngestion, ctx: SinkContext) -> None:
    """A 401 gets a fresh token and the call is repeated."""
    sink = build(fake_logs.sink_table(), ctx)
    await sink.send(events(1))
    fake_logs.expire_tokens()
    await sink.send(events(1, start=1))
    assert fake_logs.token_requests == 2 and len(fake_logs.rows) == 2
    await sink.aclose()


async def test_missing_role_is_transient(fake_logs: FakeLogsIngestion, ctx: SinkContext) -> None:
    """403 (no Monitoring Metrics Publisher) holds the batch instead of dead-lettering it."""
    fake_logs.forbidden = True
    sink = build(fake_logs.sink_table(), ctx)
    with pytest.raises(TransientSinkError, match="403"):
        await sink.send(events(1))
    await sink.aclose()


async def test_invalid_content_rejects_the_call(fake_logs: FakeLogsIngestion, ctx: SinkContext) -> None:
    """400 rejects the events of that call (dead-lettered with Azure's error code)."""
    fake_logs.faults.append(L.INVALID)
    sink = build(fake_logs.sink_table(), ctx)
    result = await sink.send(events(2))
    assert sorted(result.rejected) == [0, 1] and "InvalidContent" in result.rejected[0]
    await sink.aclose()


async def test_bad_secret_is_transient_and_never_logged(
    fake_logs: FakeLogsIngestion, ctx: SinkContext, caplog: pytest.LogCaptureFixture
) -> None:
    """A rejected client secret holds the batch; neither error nor log quotes the secret."""
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-secret-3f9a-never-print"
    sink = build(fake_logs.sink_table(client_secret=wrong), ctx)
    with pytest.raises(TransientSinkError, match="AADSTS7000215") as info:
        await sink.send(events(1))
    for secret in (wrong, L.CLIENT_SECRET):
        leaked = secret in str(info.value) or secret in caplog.text
        assert not leaked, "the client secret leaked into the error or the log"
    await sink.aclose()


class TestCredentials:
    """The sink takes every credential table a Graph source takes (``agent.entra``)."""

    async def test_certificate_pem(
        self, fake_logs: FakeLogsIngestion, ctx: SinkContext, tmp_path: Path
    ) -> None:
        """An encrypted PEM key + certificate: MSAL signs an assertion the token endpoint verifies."""
        key, cert, pem = make_cert(tmp_path)
        fake_logs.register_certificate(pem)
        cred = {
            "type": "certificate",
            "private_key_path": str(key),
            "certificate_path": str(cert),
            "private_key_passphrase": PASSPHRASE,
        }
        sink = build(fake_logs.sink_table(client_secret=None, credential=cred), ctx)
        assert not (await sink.send(events(2))).retry
        assert [r["id"] for r in fake_logs.rows] == [e.alert["id"] for e in events(2)]
        assert fake_logs.grants == ["assertion"]
        await sink.aclose()

    async def test_certificate_sha1_thumbprint_and_pfx(
        self, fake_logs: FakeLogsIngestion, ctx: SinkContext, tmp_path: Path
    ) -> None:
        """The portal's SHA-1 thumbprint form, and a PKCS#12 bundle with a passphrase."""
        key, _, pem = make_cert(tmp_path)
        fake_logs.register_certificate(pem)
        tables = [
            {"type": "certificate", "private_key_path": str(key), "thumbprint": thumbprint_sha1(pem),
             "private_key_passphrase": PASSPHRASE},
            {"type": "pfx", "path": str(tmp_path / "app.pfx"), "passphrase": PASSPHRASE},
        ]  # fmt: skip
        for i, cred in enumerate(tables):
            sink = build(fake_logs.sink_table(client_secret=None, credential=cred), ctx)
            await sink.send(events(1, start=i))
            await sink.aclose()
        assert [r["id"] for r in fake_logs.rows] == [e.alert["id"] for e in events(2)]
        assert fake_logs.grants == ["assertion", "assertion"]

    async def test_workload_identity_reads_the_token_file_fresh(
        self,
        fake_logs: FakeLogsIngestion,
        ctx: SinkContext,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Workload identity (``$AZURE_FEDERATED_TOKEN_FILE``): the file is read on each token request."""
        token_file = tmp_path / "azure-identity-token"
        token_file.write_text("federated-one\n")
        fake_logs.federated_assertions = {"federated-one"}
        monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
        sink = build(fake_logs.sink_table(client_secret=None, credential={"type": "workload_identity"}), ctx)
        await sink.send(events(1))
        token_file.write_text("federated-two\n")  # the platform rotates the file
        fake_logs.federated_assertions = {"federated-two"}
        fake_logs.expire_tokens()
        await sink.send(events(1, start=1))
        assert len(fake_logs.rows) == 2 and fake_logs.grants == ["assertion", "assertion"]
        await sink.aclose()

    async def test_unregistered_certificate_holds_the_batch(
        self,
        fake_logs: FakeLogsIngestion,
        ctx: SinkContext,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A certificate the app does not know: transient (AADSTS700027), the passphrase never shown."""
        caplog.set_level(logging.DEBUG)
        make_cert(tmp_path)
        cred = {"type": "pfx", "path": str(tmp_path / "app.pfx"), "passphrase": PASSPHRASE}
        sink = build(fake_logs.sink_table(client_secret=None, credential=cred), ctx)
        with pytest.raises(TransientSinkError, match="AADSTS700027") as info:
            await sink.send(events(1))
        leaked = PASSPHRASE in str(info.value) or PASSPHRASE in caplog.text
        assert not leaked, "the certificate passphrase leaked into the error or the log"
        assert fake_logs.rows == []
        await sink.aclose()

    def test_exactly_one_of_secret_and_credential(self, fake_logs: FakeLogsIngestion) -> None:
        """Neither, or both, is a configuration error."""
        with pytest.raises(ValueError, match="exactly one of client_secret and credential"):
            config(fake_logs.sink_table(client_secret=None))
        with pytest.raises(ValueError, match="exactly one of client_secret and credential"):
            config(fake_logs.sink_table(credential={"type": "secret", "value": "x"}))
