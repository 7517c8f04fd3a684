export function onMessage(message) {
  return message +;
}
