// Module state persists across events and connections of one endpoint.
let count = 0;
export function onMessage() {
  count++;
  return String(count);
}
