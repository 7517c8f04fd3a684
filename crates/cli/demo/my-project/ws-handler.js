// The seed's endpoint, in Dirigible's first handler style: the module runs once per event and asks
// which event it is. ws://127.0.0.1:3333/websockets/v4/service/my-endpoint
var websockets = require("net/v4/websockets");

if (websockets.isOnOpen()) {
    console.log("my-endpoint: a client connected");
} else if (websockets.isOnMessage()) {
    var message = websockets.getMessage();
    console.log("my-endpoint: received " + message);
    websockets.getPeer().send("echo: " + message);
} else if (websockets.isOnError()) {
    console.error("my-endpoint: " + websockets.getError());
} else if (websockets.isOnClose()) {
    console.log("my-endpoint: a client left");
}
