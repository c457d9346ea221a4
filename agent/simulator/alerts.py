"""Realistic alerts_v2 alerts, shaped like the official samples (Graph docs, security-list-alerts_v2)."""

from __future__ import annotations

import random
import uuid
from datetime import datetime
from typing import Any

from agent.timestamps import format_dt

SERVICE_SOURCES = (
    "microsoftDefenderForEndpoint",
    "microsoftDefenderForIdentity",
    "microsoftDefenderForOffice365",
    "microsoftDefenderForCloudApps",
    "azureAdIdentityProtection",
)
SEVERITIES = ("informational", "low", "medium", "high")
CATEGORIES = ("DefenseEvasion", "CredentialAccess", "Execution", "LateralMovement", "InitialAccess")
TITLES = (
    "Suspicious execution of hidden file",
    "Suspicious PowerShell command line",
    "Unfamiliar sign-in properties",
    "Email messages containing malicious URL removed after delivery",
    "Possible credential theft activity",
)


def _device(rng: random.Random, ts: str) -> dict[str, Any]:
    host = f"pc{rng.randint(100, 999)}"
    return {
        "@odata.type": "#microsoft.graph.security.deviceEvidence",
        "createdDateTime": ts,
        "verdict": rng.choice(("unknown", "suspicious", "malicious")),
        "remediationStatus": "none",
        "remediationStatusDetails": None,
        "roles": [],
        "tags": [],
        "firstSeenDateTime": ts,
        "mdeDeviceId": uuid.UUID(int=rng.getrandbits(128)).hex,
        "azureAdDeviceId": None,
        "deviceDnsName": f"{host}.contoso.com",
        "hostName": host,
        "ntDomain": "CONTOSO",
        "dnsDomain": "contoso.com",
        "osPlatform": "Windows10",
        "osBuild": 22631,
        "healthStatus": "active",
        "riskScore": rng.choice(("low", "medium", "high")),
        "ipInterfaces": [f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}"],
        "loggedOnUsers": [{"accountName": "alice", "domainName": "CONTOSO"}],
    }


def _user(rng: random.Random, ts: str) -> dict[str, Any]:
    name = rng.choice(("alice", "bob", "carol", "dave"))
    return {
        "@odata.type": "#microsoft.graph.security.userEvidence",
        "createdDateTime": ts,
        "verdict": "unknown",
        "remediationStatus": "none",
        "remediationStatusDetails": None,
        "roles": [],
        "tags": [],
        "userAccount": {
            "accountName": name,
            "domainName": "CONTOSO",
            "userSid": f"S-1-5-21-{rng.randint(10**8, 10**9)}",
            "azureAdUserId": str(uuid.UUID(int=rng.getrandbits(128))),
            "userPrincipalName": f"{name}@contoso.com",
            "displayName": name.title(),
        },
    }


def _file(rng: random.Random, ts: str) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.security.fileEvidence",
        "createdDateTime": ts,
        "verdict": "malicious",
        "remediationStatus": rng.choice(("none", "remediated", "prevented")),
        "remediationStatusDetails": None,
        "roles": ["source"],
        "tags": [],
        "detectionStatus": "detected",
        "mdeDeviceId": None,
        "fileDetails": {
            "sha1": f"{rng.getrandbits(160):040x}",
            "sha256": f"{rng.getrandbits(256):064x}",
            "fileName": rng.choice(("payload.exe", "invoice.pdf.js", "svch0st.exe")),
            "filePath": "C:\\Users\\alice\\Downloads",
            "fileSize": rng.randint(1000, 10**7),
            "filePublisher": None,
            "signer": None,
            "issuer": None,
        },
    }


def _ip(rng: random.Random, ts: str) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.security.ipEvidence",
        "createdDateTime": ts,
        "verdict": "suspicious",
        "remediationStatus": "none",
        "remediationStatusDetails": None,
        "roles": [],
        "tags": [],
        "ipAddress": f"203.0.113.{rng.randint(1, 254)}",
        "countryLetterCode": rng.choice(("US", "NL", "BR")),
    }


def make_alert(rng: random.Random, tenant_id: str, created: datetime, seq: int) -> dict[str, Any]:
    """One new alert created at ``created``."""
    ts = format_dt(created)
    source = rng.choice(SERVICE_SOURCES)
    alert_id = f"da{created.strftime('%y%m%d%H%M%S')}{seq:08d}_{rng.randint(-(2**31), 2**31)}"
    incident = str(rng.randint(1000, 99999))
    evidence = [_device(rng, ts), _user(rng, ts)]
    if rng.random() < 0.5:
        evidence.append(_file(rng, ts))
    if rng.random() < 0.4:
        evidence.append(_ip(rng, ts))
    return {
        "@odata.type": "#microsoft.graph.security.alert",
        "id": alert_id,
        "providerAlertId": alert_id,
        "incidentId": incident,
        "status": "new",
        "severity": rng.choice(SEVERITIES),
        "classification": "unknown",
        "determination": "unknown",
        "serviceSource": source,
        "detectionSource": "antivirus" if source == "microsoftDefenderForEndpoint" else "unknown",
        "detectorId": str(uuid.UUID(int=rng.getrandbits(128))),
        "tenantId": tenant_id,
        "title": rng.choice(TITLES),
        "description": "A hidden file has been launched. This activity could indicate a compromised host.",
        "recommendedActions": "Collect artifacts and determine scope\n\tReview the machine timeline.",
        "category": rng.choice(CATEGORIES),
        "assignedTo": None,
        "alertWebUrl": f"https://security.microsoft.com/alerts/{alert_id}?tid={tenant_id}",
        "incidentWebUrl": f"https://security.microsoft.com/incidents/{incident}?tid={tenant_id}",
        "actorDisplayName": None,
        "threatDisplayName": None,
        "threatFamilyName": None,
        "mitreTechniques": [rng.choice(("T1564.001", "T1059.001", "T1078", "T1566.002"))],
        "createdDateTime": ts,
        "lastUpdateDateTime": ts,
        "resolvedDateTime": None,
        "firstActivityDateTime": ts,
        "lastActivityDateTime": ts,
        "comments": [],
        "evidence": evidence,
        "systemTags": [],
    }


def update_alert(rng: random.Random, alert: dict[str, Any], when: datetime) -> dict[str, Any]:
    """A new version of ``alert``: status moves on, ``lastUpdateDateTime`` becomes ``when``."""
    new = dict(alert)
    new["status"] = "resolved" if alert["status"] == "inProgress" else "inProgress"
    new["lastUpdateDateTime"] = format_dt(when)
    if new["status"] == "resolved":
        new["resolvedDateTime"] = new["lastUpdateDateTime"]
        new["classification"] = rng.choice(("truePositive", "falsePositive", "informationalExpectedActivity"))
    return new


def make_incident(rng: random.Random, tenant_id: str, created: datetime, seq: int) -> dict[str, Any]:
    """One incident created at ``created`` (shape: Graph docs ``security-list-incidents.md``)."""
    ts = format_dt(created)
    incident_id = str(100000 + seq)
    return {
        "@odata.type": "#microsoft.graph.security.incident",
        "id": incident_id,
        "tenantId": tenant_id,
        "status": "active",
        "incidentWebUrl": f"https://security.microsoft.com/incidents/{incident_id}?tid={tenant_id}",
        "redirectIncidentId": None,
        "displayName": f"Multi-stage incident involving {rng.choice(('Initial access', 'Execution'))}",
        "createdDateTime": ts,
        "lastUpdateDateTime": ts,
        "assignedTo": None,
        "classification": "unknown",
        "determination": "unknown",
        "severity": rng.choice(SEVERITIES),
        "customTags": [],
        "systemTags": [],
        "description": None,
        "comments": [],
    }
