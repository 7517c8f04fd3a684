export function onMessage(message) {
  if (message === "ok") return "fine";
  for (;;) {}
}
