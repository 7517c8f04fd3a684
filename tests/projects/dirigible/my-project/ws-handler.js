// The seed's handler, shared by the server endpoint (my-endpoint.websocket) and the client example
// (client.js), in Dirigible 6's CommonJS export style. Server events have a peer; client events log.
var websockets = require("net/v4/websockets");

function where() {
    return websockets.getPeer() === null ? "client" : "server";
}

exports.onOpen = function () {
    console.log(where() + " onopen " + websockets.getMethod());
};

exports.onMessage = function (message) {
    console.log(where() + " onmessage " + message);
    if (where() === "server") {
        return "echo: " + message;
    }
};

exports.onError = function (error) {
    console.log(where() + " onerror " + error);
};

exports.onClose = function () {
    console.log(where() + " onclose " + websockets.getMethod());
};
