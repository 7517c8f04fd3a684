export function onMessage(message) {
  if (message === "ok") return "fine";
  const missing = undefined;
  return missing.property;
}
