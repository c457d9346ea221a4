"""alerts_v2 evidence -> ECS fields, over *every* evidence item (not the first of each type).

One pass over the evidence list: each known ``@odata.type`` adds its values to flat ECS field paths
(``host.name``, ``process.parent.hash.sha256`` ...), in order; :func:`nest` then builds the nested
object, one value as a scalar and several (deduplicated, order kept) as a list, as ECS allows for
every keyword, ip, long and date field. Several devices therefore give ``host.name: [a, b]``; values
of one device stay at the same list position only when every device has that property (ECS has no
per-entity grouping outside ``nested`` fields, and Elastic's own integrations flatten the same way).

Each type also names the ECS ``event.category`` it stands for. Unknown evidence types add nothing
here; the whole alert is kept under ``microsoft.graph.alert`` anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agent.codecs.paths import join_path

Fields = dict[str, list[Any]]
_Ev = Mapping[str, Any]


def _s(value: Any) -> str | None:
    """``value`` if it is a non-empty string (also the ECS document's own helper)."""
    return value if value.__class__ is str and value else None


def _add(out: Fields, key: str, value: Any) -> None:
    if value is not None and value != "":
        values = out.get(key)
        if values is None:
            out[key] = [value]
        else:
            values.append(value)


def _sub(obj: _Ev, key: str) -> _Ev:
    value = obj.get(key)
    return value if value.__class__ is dict else {}


def _hashes(out: Fields, prefix: str, details: _Ev) -> None:
    for algo in ("md5", "sha1", "sha256"):
        value = _s(details.get(algo))
        if value:
            _add(out, f"{prefix}.hash.{algo}", value)
            _add(out, "related.hash", value)


def account(out: Fields, prefix: str, acct: _Ev, full: bool = True) -> None:
    """An alerts_v2 ``userAccount`` as ``<prefix>.name/id`` (+ ``domain/full_name/email`` if ``full``)."""
    name = _s(acct.get("accountName"))
    upn = _s(acct.get("userPrincipalName"))
    _add(out, f"{prefix}.name", name)
    _add(out, f"{prefix}.id", _s(acct.get("azureAdUserId")) or _s(acct.get("userSid")))
    if full:  # ECS has only process.user.name and .id
        _add(out, f"{prefix}.domain", _s(acct.get("domainName")))
        _add(out, f"{prefix}.full_name", _s(acct.get("displayName")))
        _add(out, f"{prefix}.email", upn)
    _add(out, "related.user", name)
    _add(out, "related.user", upn)


def process_accounts(evidence: Any, out: Fields) -> None:
    """The process evidences' accounts as ``user.*`` (for alerts without user evidence)."""
    for ev in evidence if evidence.__class__ is list else ():
        kind = ev.get("@odata.type") if ev.__class__ is dict else None
        if kind.__class__ is str and kind.endswith(".processEvidence"):
            account(out, "user", _sub(ev, "userAccount"))


def _device(ev: _Ev, out: Fields) -> None:
    dns, host = _s(ev.get("deviceDnsName")), _s(ev.get("hostName"))
    _add(out, "host.name", dns or host)
    _add(out, "host.hostname", host)
    _add(out, "host.id", _s(ev.get("mdeDeviceId")))
    _add(out, "host.domain", _s(ev.get("dnsDomain")) or _s(ev.get("ntDomain")))
    _add(out, "host.os.name", _s(ev.get("osPlatform")))
    _add(out, "host.os.version", _s(ev.get("version")))
    _add(out, "related.hosts", dns)
    _add(out, "related.hosts", host)
    ips = ev.get("ipInterfaces")
    for ip in ips if ips.__class__ is list else ():
        if _s(ip):
            _add(out, "host.ip", ip)
            _add(out, "related.ip", ip)
    users = ev.get("loggedOnUsers")
    for user in users if users.__class__ is list else ():
        if user.__class__ is dict:
            _add(out, "related.user", _s(user.get("accountName")))


def _user(ev: _Ev, out: Fields) -> None:
    account(out, "user", _sub(ev, "userAccount"))


def _mailbox(ev: _Ev, out: Fields) -> None:
    address = _s(ev.get("primaryAddress"))
    _add(out, "user.email", address)
    _add(out, "related.user", address)
    acct = _sub(ev, "userAccount")
    if acct:
        account(out, "user", acct)
    else:
        _add(out, "user.full_name", _s(ev.get("displayName")))


def _file(ev: _Ev, out: Fields) -> None:
    details = _sub(ev, "fileDetails")
    name, directory = _s(details.get("fileName")), _s(details.get("filePath"))
    _add(out, "file.name", name)
    _add(out, "file.directory", directory)
    _add(out, "file.path", join_path(directory, name))
    size = details.get("fileSize")
    if size.__class__ is int:
        _add(out, "file.size", size)
    _hashes(out, "file", details)


def _process(ev: _Ev, out: Fields) -> None:
    pid, ppid = ev.get("processId"), ev.get("parentProcessId")
    if pid.__class__ is int:
        _add(out, "process.pid", pid)
    if ppid.__class__ is int:
        _add(out, "process.parent.pid", ppid)
    _add(out, "process.command_line", _s(ev.get("processCommandLine")))
    _add(out, "process.start", _s(ev.get("processCreationDateTime")))
    _add(out, "process.parent.start", _s(ev.get("parentProcessCreationDateTime")))
    images = (("process", _sub(ev, "imageFile")), ("process.parent", _sub(ev, "parentProcessImageFile")))
    for prefix, image in images:
        name = _s(image.get("fileName"))
        _add(out, f"{prefix}.name", name)
        _add(out, f"{prefix}.executable", join_path(_s(image.get("filePath")), name))
        _hashes(out, prefix, image)
    account(out, "process.user", _sub(ev, "userAccount"), full=False)


def _registry_key(ev: _Ev, out: Fields) -> None:
    hive, key = _s(ev.get("registryHive")), _s(ev.get("registryKey"))
    _add(out, "registry.hive", hive)
    _add(out, "registry.key", key)
    _add(out, "registry.path", f"{hive}\\{key}" if hive and key else key)


def _registry_value(ev: _Ev, out: Fields) -> None:
    _registry_key(ev, out)
    name = _s(ev.get("registryValueName"))
    _add(out, "registry.value", name)
    _add(out, "registry.data.strings", _s(ev.get("registryValue")))
    _add(out, "registry.data.type", _s(ev.get("registryValueType")))


def _ip(ev: _Ev, out: Fields) -> None:
    _add(out, "related.ip", _s(ev.get("ipAddress")))


def _url(ev: _Ev, out: Fields) -> None:
    _add(out, "url.full", _s(ev.get("url")))


def _message(ev: _Ev, out: Fields) -> None:
    """analyzedMessageEvidence: an email (Defender for Office 365)."""
    header_from, envelope_from = _sub(ev, "p2Sender"), _sub(ev, "p1Sender")
    _add(out, "email.from.address", _s(header_from.get("emailAddress")))  # RFC 5322 From:
    _add(out, "email.sender.address", _s(envelope_from.get("emailAddress")))  # who transmitted it
    _add(out, "email.to.address", _s(ev.get("recipientEmailAddress")))
    _add(out, "email.subject", _s(ev.get("subject")))
    _add(out, "email.message_id", _s(ev.get("internetMessageId")))
    _add(out, "email.delivery_timestamp", _s(ev.get("receivedDateTime")))
    direction = _s(ev.get("antiSpamDirection"))
    _add(out, "email.direction", direction.lower() if direction else None)
    sender_ip = _s(ev.get("senderIp"))
    _add(out, "source.ip", sender_ip)
    _add(out, "related.ip", sender_ip)
    urls = ev.get("urls")
    for url in urls if urls.__class__ is list else ():
        _add(out, "url.full", _s(url))


Handler = Callable[[_Ev, Fields], None]

#: Short ``@odata.type`` -> (what it adds, the ECS ``event.category`` it stands for).
EVIDENCE: dict[str, tuple[Handler | None, str]] = {
    "deviceEvidence": (_device, "host"),
    "userEvidence": (_user, "iam"),
    "mailboxEvidence": (_mailbox, "iam"),
    "securityGroupEvidence": (None, "iam"),
    "oauthApplicationEvidence": (None, "iam"),
    "servicePrincipalEvidence": (None, "iam"),
    "cloudLogonSessionEvidence": (None, "authentication"),
    "cloudLogonRequestEvidence": (None, "authentication"),
    "fileEvidence": (_file, "file"),
    "fileHashEvidence": (None, "file"),
    "processEvidence": (_process, "process"),
    "registryKeyEvidence": (_registry_key, "registry"),
    "registryValueEvidence": (_registry_value, "registry"),
    "ipEvidence": (_ip, "network"),
    "urlEvidence": (_url, "network"),
    "dnsEvidence": (None, "network"),
    "networkConnectionEvidence": (None, "network"),
    "analyzedMessageEvidence": (_message, "email"),
    "mailClusterEvidence": (None, "email"),
    "submissionMailEvidence": (None, "email"),
    "malwareEvidence": (None, "malware"),
}


def collect(evidence: Any, out: Fields) -> list[str]:
    """Add the ECS fields of every evidence item to ``out``; return the ``event.category`` values."""
    categories: list[str] = []
    for ev in evidence if evidence.__class__ is list else ():
        if ev.__class__ is not dict:
            continue
        kind = ev.get("@odata.type")
        if kind.__class__ is not str:
            continue
        known = EVIDENCE.get(kind[kind.rfind(".") + 1 :])
        if known is None:
            continue
        handler, category = known
        if handler is not None:
            handler(ev, out)
        if category not in categories:
            categories.append(category)
    return categories


def nest(fields: Fields, doc: dict[str, Any]) -> None:
    """Write flat ``a.b.c -> values`` into ``doc`` as nested objects (one value: scalar; several: list)."""
    for path, values in fields.items():
        unique = list(dict.fromkeys(values)) if len(values) > 1 else values
        target = doc
        *parents, leaf = path.split(".")
        for part in parents:
            child = target.get(part)
            if child is None:
                child = target[part] = {}
            target = child
        target[leaf] = unique[0] if len(unique) == 1 else unique
