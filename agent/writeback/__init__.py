"""Write-back: triage done in a SIEM updates alerts and incidents in Microsoft Defender.

``config`` is the ``[writeback]`` table; ``updates`` validates what may be sent; ``journal`` and
``queue`` keep requests durable; ``executor`` and ``worker`` deliver them through the source's Graph
client exactly once; ``server`` and ``listener`` are the inbound API; ``versions`` and ``loop`` mark
(or hold back) the alert versions the agent's own writes produced; ``service`` wires them together.
Nothing is imported here, so the configuration root can import ``config`` without the rest.
"""
