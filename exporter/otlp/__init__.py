"""The OTLP/HTTP receiver: Claude Code's OpenTelemetry metrics and events as canonical events.

`wire` reads and writes the protocol (protobuf or JSON, gzip, the `Status` of a refusal),
`cumulative` turns cumulative counters into increases, and `claude_code` translates Claude
Code's metrics and log records into canonical events. Nothing past this package knows OTLP.
"""
