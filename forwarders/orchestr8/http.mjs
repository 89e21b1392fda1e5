// What the forwarder and the runner share about the exporter's HTTP answers. No dependencies.

export function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export function refusal({ status, body, text }) {
  if (body?.code) return `${status} ${body.code}: ${body.message ?? ''}`.trim();
  return `${status} ${String(text ?? '').slice(0, 200)}`.trim();
}

// Retry-After is seconds or an HTTP date.
export function retryAfterMs(header) {
  if (header === null || header === undefined) return 0;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? 0 : Math.max(0, date - Date.now());
}

export function describeError(error) {
  const cause = error?.cause ? ` (${error.cause.code ?? error.cause.message ?? error.cause})` : '';
  return `${error?.message ?? error}${cause}`;
}
