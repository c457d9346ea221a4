"""Authentication (secret, certificate, PFX, workload identity), clouds, CA bundle, proxies, secret hygiene."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.proxies import msal_proxies
from agent.simulator.server import thumbprint_sha1
from agent.sources.config import GraphSecuritySourceConfig
from agent.sources.graph.endpoints import endpoints_for
from tests.fakes.proxy import ConnectProxy
from tests.graph.conftest import SimFactory
from tests.graph.harness import Harness, expected_versions, source_table
from tests.support.certs import PASSPHRASE, make_cert
from tests.support.wait import until


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records)


class TestCredentials:
    async def test_certificate_pem_sha256_thumbprint(
        self, make_sim: SimFactory, harness: Harness, ca: Path, tmp_path: Path
    ) -> None:
        """A PEM key (encrypted) + certificate: MSAL signs a PS256 assertion the simulator verifies."""
        sim = await make_sim()
        key, cert, pem = make_cert(tmp_path)
        sim.register_certificate(pem)
        sim.add_alerts(5)
        cred = {
            "type": "certificate",
            "private_key_path": str(key),
            "certificate_path": str(cert),
            "private_key_passphrase": PASSPHRASE,
        }
        harness.start(source_table(sim, ca, client_secret=None, credential=cred))
        await harness.wait_delivered(expected_versions(sim))
        assert [r.status for r in sim.token_requests()] == [200]

    async def test_certificate_with_sha1_thumbprint(
        self, make_sim: SimFactory, harness: Harness, ca: Path, tmp_path: Path
    ) -> None:
        """The portal's SHA-1 thumbprint form (RS256, x5t) also works."""
        sim = await make_sim()
        key, _, pem = make_cert(tmp_path)
        sim.register_certificate(pem)
        sim.add_alerts(3)
        cred = {
            "type": "certificate",
            "private_key_path": str(key),
            "thumbprint": thumbprint_sha1(pem),
            "private_key_passphrase": PASSPHRASE,
        }
        harness.start(source_table(sim, ca, client_secret=None, credential=cred))
        await harness.wait_delivered(expected_versions(sim))

    async def test_pfx_with_passphrase(
        self, make_sim: SimFactory, harness: Harness, ca: Path, tmp_path: Path
    ) -> None:
        """A PKCS#12 bundle with a passphrase."""
        sim = await make_sim()
        _, _, pem = make_cert(tmp_path)
        sim.register_certificate(pem)
        sim.add_alerts(3)
        cred = {"type": "pfx", "path": str(tmp_path / "app.pfx"), "passphrase": PASSPHRASE}
        harness.start(source_table(sim, ca, client_secret=None, credential=cred))
        await harness.wait_delivered(expected_versions(sim))

    async def test_unregistered_certificate_is_rejected_with_aadsts_code(
        self,
        make_sim: SimFactory,
        harness: Harness,
        ca: Path,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A certificate the app does not know: AADSTS700027 in one error line, no crash, nothing delivered."""
        sim = await make_sim()
        make_cert(tmp_path)
        sim.add_alerts(3)
        cred = {"type": "pfx", "path": str(tmp_path / "app.pfx"), "passphrase": PASSPHRASE}
        harness.start(source_table(sim, ca, client_secret=None, credential=cred))
        await until(lambda: len(sim.token_requests()) >= 2, 5, "retried token requests")
        assert "AADSTS700027" in log_text(caplog)
        assert harness.delivered == []
        leaked = PASSPHRASE in log_text(caplog)
        assert not leaked, "the certificate passphrase leaked into the log"

    async def test_workload_identity_reads_the_token_file_fresh(
        self,
        make_sim: SimFactory,
        harness: Harness,
        ca: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Workload identity: the federated token file is read on each token request, so rotation works."""
        sim = await make_sim()
        token_file = tmp_path / "azure-identity-token"
        token_file.write_text("federated-assertion-one\n")
        sim.federated_assertions = {"federated-assertion-one"}
        monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
        sim.add_alerts(3)
        harness.start(source_table(sim, ca, client_secret=None, credential={"type": "workload_identity"}))
        await harness.wait_delivered(expected_versions(sim))
        token_file.write_text("federated-assertion-two\n")  # the platform rotates the file
        sim.federated_assertions = {"federated-assertion-two"}
        sim.expire_tokens()
        more = sim.add_alerts(2)
        await harness.wait_delivered({(a["id"], a["lastUpdateDateTime"]) for a in more})
        assert len(sim.token_requests()) == 2

    async def test_missing_token_file_backs_off_until_it_appears(
        self,
        make_sim: SimFactory,
        harness: Harness,
        ca: Path,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """An unreadable federated token file is an auth error (named file, no crash); once written, it works."""
        sim = await make_sim()
        token_file = tmp_path / "not-yet"
        sim.federated_assertions = {"late-assertion"}
        sim.add_alerts(2)
        harness.start(
            source_table(
                sim,
                ca,
                client_secret=None,
                credential={"type": "workload_identity", "token_file": str(token_file)},
            )
        )
        await until(lambda: "cannot read federated token file" in log_text(caplog), 5, "file error logged")
        token_file.write_text("late-assertion")
        await harness.wait_delivered(expected_versions(sim))

    async def test_no_secret_reaches_the_logs(
        self,
        make_sim: SimFactory,
        harness: Harness,
        ca: Path,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """With DEBUG logging everywhere (MSAL included), no secret, passphrase, assertion or token is logged."""
        caplog.set_level(logging.DEBUG)
        sim = await make_sim(client_secret="known-secret-value-1234")
        sim.add_alerts(3)
        harness.start(source_table(sim, ca, name="good", client_secret="known-secret-value-1234"))
        harness.start(source_table(sim, ca, name="wrong", client_secret="wrong-secret-value-5678"))
        token_file = tmp_path / "tok"
        token_file.write_text("assertion-value-abcdef")
        harness.start(
            source_table(
                sim,
                ca,
                name="wi",
                client_secret=None,
                credential={"type": "workload_identity", "token_file": str(token_file)},
            )
        )
        key, cert, _ = make_cert(tmp_path)
        harness.start(
            source_table(
                sim,
                ca,
                name="cert",
                client_secret=None,
                credential={
                    "type": "certificate",
                    "private_key_path": str(key),
                    "certificate_path": str(cert),
                    "private_key_passphrase": PASSPHRASE,
                },
            )
        )
        await harness.wait_delivered(expected_versions(sim), prefix="good/")
        await until(lambda: "AADSTS700027" in log_text(caplog) and "AADSTS7000215" in log_text(caplog), 5)
        text = log_text(caplog)
        issued = list(sim.tokens)
        for secret in (
            "known-secret-value-1234",
            "wrong-secret-value-5678",
            "assertion-value-abcdef",
            PASSPHRASE,
            *issued,
        ):
            leaked = secret in text
            assert not leaked, "a credential leaked into the log"


class TestClouds:
    @pytest.mark.parametrize(
        ("cloud", "login", "graph"),
        [
            ("global", "https://login.microsoftonline.com", "https://graph.microsoft.com"),
            ("usgov", "https://login.microsoftonline.us", "https://graph.microsoft.us"),
            ("dod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
        ],
    )
    def test_cloud_endpoints_and_scope(self, cloud: str, login: str, graph: str) -> None:
        """Each national cloud has its login host, Graph host and its own .default scope."""
        cfg = GraphSecuritySourceConfig(
            type="graph_security",
            name="t",
            tenant_id="contoso.onmicrosoft.us",
            client_id="c",
            client_secret="s",
            cloud=cloud,  # type: ignore[arg-type]
        )
        ep = endpoints_for(cfg)
        assert ep.authority == f"{login}/contoso.onmicrosoft.us"
        assert ep.graph_root == graph
        assert ep.scope == f"{graph}/.default"
        assert not ep.custom

    def test_explicit_overrides(self) -> None:
        """authority_url/graph_url override the cloud (and the scope follows the Graph URL)."""
        cfg = GraphSecuritySourceConfig(
            type="graph_security",
            name="t",
            tenant_id="t1",
            client_id="c",
            client_secret="s",
            authority_url="https://login.example/",
            graph_url="https://graph.example/",
        )
        ep = endpoints_for(cfg)
        assert (ep.authority, ep.graph_root, ep.scope, ep.custom) == (
            "https://login.example/t1",
            "https://graph.example",
            "https://graph.example/.default",
            True,
        )

    async def test_ca_bundle_is_required_for_a_private_ca(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """Without the CA bundle (REQUESTS_CA_BUNDLE is ignored by design) TLS fails: transient errors, no data."""
        sim = await make_sim()
        sim.add_alerts(2)
        table = source_table(sim, ca)
        del table["ca_bundle"]
        harness.start(table)
        await until(
            lambda: (
                harness.metric("siem_agent_poll_errors_total", stream="sim/alerts_v2/all", reason="transient")
                >= 1
            ),
            5,
        )
        assert sim.requests == []


class TestProxy:
    async def test_configured_proxy_carries_token_and_graph_requests(
        self, make_sim: SimFactory, harness: Harness, ca: Path, proxy: ConnectProxy
    ) -> None:
        """proxy_url is used by MSAL (discovery, token) and by the Graph client alike."""
        sim = await make_sim()
        sim.add_alerts(3)
        harness.start(source_table(sim, ca, proxy_url=f"http://127.0.0.1:{proxy.port}"))
        await harness.wait_delivered(expected_versions(sim))
        target = sim.base_url.removeprefix("https://")
        assert proxy.targets.count(target) >= 2  # at least one tunnel for MSAL, one for aiohttp

    async def test_environment_proxy_and_no_proxy(
        self,
        make_sim: SimFactory,
        tmp_path: Path,
        ca: Path,
        proxy: ConnectProxy,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """HTTPS_PROXY from the environment is used by both clients; NO_PROXY bypasses it."""
        sim = await make_sim()
        sim.add_alerts(3)
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        h = Harness(tmp_path / "one")
        try:
            h.start(source_table(sim, ca))
            await h.wait_delivered(expected_versions(sim))
        finally:
            await h.close()
        assert len(proxy.targets) >= 2
        before = len(proxy.targets)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        h2 = Harness(tmp_path / "two")
        try:
            h2.start(source_table(sim, ca, name="other"))
            await h2.wait_delivered(expected_versions(sim))
        finally:
            await h2.close()
        assert len(proxy.targets) == before

    def test_msal_proxies_honour_no_proxy(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """MSAL's session (trust_env=False) gets the environment's proxy explicitly, minus NO_PROXY hosts."""
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
        monkeypatch.setenv("NO_PROXY", "login.internal")
        assert msal_proxies(None, "https://login.microsoftonline.com/t")["https"] == "http://proxy.corp:3128"
        assert msal_proxies(None, "https://login.internal/t") == {}
        assert (
            msal_proxies("http://explicit:8080", "https://login.internal/t")["https"]
            == "http://explicit:8080"
        )
