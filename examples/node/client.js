// ferstream from Node.js: streams one JPEG (or PNG) through EmotionService.StreamAnnotate and prints every
// face found as one JSON line on stdout.
//
//   npm ci
//   node client.js --server 127.0.0.1:50051 photo.jpg
//   node client.js --server ipv4:127.0.0.1:50051,127.0.0.1:50052 --detector yunet photo.jpg
//
// The stubs are built at run time from protos/ferstream/v1/emotion.proto, the same file the Python server is
// generated from, so nothing here is generated or copied.
//
// Exit codes: 0 done, 1 the server failed us, 2 bad arguments or an unreadable image.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'protos');
const PROTO_FILE = 'ferstream/v1/emotion.proto';
const DETECTORS = ['haar', 'ssd', 'yunet'];
// Several addresses in one target (ipv4:a:1,b:2 or a DNS name with many records) are spread over by call.
const ROUND_ROBIN = JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] });
const USAGE = `usage: node client.js [--server TARGET] [--detector ${DETECTORS.join('|')}] [--timeout SECONDS]
                      [--tls-ca PEM [--server-name NAME]] [--token TOKEN] IMAGE`;

class UsageError extends Error {}

function parseCommandLine(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        server: { type: 'string', default: process.env.FER_SERVER || '127.0.0.1:50051' },
        detector: { type: 'string' },
        timeout: { type: 'string', default: '60' },
        'tls-ca': { type: 'string' },
        'server-name': { type: 'string' },
        token: { type: 'string', default: process.env.FER_TOKEN },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    throw new UsageError(error.message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    return { help: true };
  }
  if (positionals.length !== 1) {
    throw new UsageError('exactly one IMAGE is needed');
  }
  if (values.detector !== undefined && !DETECTORS.includes(values.detector)) {
    throw new UsageError(`unknown detector ${values.detector}; choose one of ${DETECTORS.join(', ')}`);
  }
  if (values['server-name'] !== undefined && values['tls-ca'] === undefined) {
    throw new UsageError('--server-name is the name in the server\'s TLS certificate: it needs --tls-ca');
  }
  const timeoutSeconds = Number(values.timeout);
  if (!(timeoutSeconds > 0)) {
    throw new UsageError(`--timeout must be a positive number of seconds, not ${values.timeout}`);
  }
  return {
    help: false,
    server: values.server,
    detector: values.detector,
    timeoutSeconds,
    tlsCa: values['tls-ca'],
    serverName: values['server-name'],
    token: values.token,
    image: positionals[0],
  };
}

function loadService() {
  const definition = protoLoader.loadSync(PROTO_FILE, {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // field names as in the .proto (frame_id, detection_score)
    enums: String, // 'EMOTION_HAPPY' rather than 4
    longs: Number, // frame ids are small
    defaults: true, // zero-valued fields (a box at x = 0) are present
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).ferstream.v1.EmotionService;
}

function makeClient(EmotionService, settings) {
  const credentials = settings.tlsCa
    ? grpc.credentials.createSsl(fs.readFileSync(settings.tlsCa))
    : grpc.credentials.createInsecure();
  const options = { 'grpc.service_config': ROUND_ROBIN };
  if (settings.serverName) {
    // The name the certificate must carry when the target is an address or another name (as fer-client
    // --server-name): checked against it, and sent as the call's authority.
    options['grpc.ssl_target_name_override'] = settings.serverName;
    options['grpc.default_authority'] = settings.serverName;
  }
  return new EmotionService(settings.server, credentials, options);
}

// 'EMOTION_HAPPY' -> 'happy', the names the Python client uses.
function shortName(enumName, prefix) {
  return enumName.slice(prefix.length).toLowerCase();
}

function faceRecord(frameId, face) {
  const probabilities = {};
  for (const score of face.scores) {
    probabilities[shortName(score.emotion, 'EMOTION_')] = Number(score.probability.toFixed(4));
  }
  return {
    frame_id: frameId,
    box: { x: face.box.x, y: face.box.y, width: face.box.width, height: face.box.height },
    detection_score: Number(face.detection_score.toFixed(4)),
    emotion: shortName(face.emotion, 'EMOTION_'),
    probabilities,
    track_id: face.track_id, // the face's track within the stream (0 only in unary Annotate answers)
  };
}

// Sends the image as frame 1 of a stream, closes the sending side, and resolves with the answers.
function streamOneFrame(client, settings, jpeg) {
  const metadata = new grpc.Metadata();
  if (settings.token) {
    metadata.set('authorization', `Bearer ${settings.token}`);
  }
  const deadline = new Date(Date.now() + settings.timeoutSeconds * 1000);
  const detector = settings.detector ? `DETECTOR_${settings.detector.toUpperCase()}` : 'DETECTOR_UNSPECIFIED';
  return new Promise((resolve, reject) => {
    const responses = [];
    const call = client.StreamAnnotate(metadata, { deadline });
    call.on('data', (response) => responses.push(response));
    call.on('error', reject);
    call.on('end', () => resolve(responses));
    call.write({ frame_id: 0, image: { encoded: jpeg }, options: { detector } });
    call.end();
  });
}

async function main(argv) {
  let settings;
  try {
    settings = parseCommandLine(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`${USAGE}\nclient.js: error: ${error.message}`);
    return 2;
  }
  if (settings.help) {
    console.log(USAGE);
    return 0;
  }
  let jpeg;
  try {
    jpeg = fs.readFileSync(settings.image);
  } catch (error) {
    console.error(`client.js: error: cannot read ${settings.image}: ${error.message}`);
    return 2;
  }
  const client = makeClient(loadService(), settings);
  try {
    const responses = await streamOneFrame(client, settings, jpeg);
    for (const response of responses) {
      if (response.error && response.error.code !== 0) {
        console.error(`client.js: frame ${response.frame_id} not processed: ${response.error.message}`);
        return 1;
      }
      for (const face of response.faces) {
        console.log(JSON.stringify(faceRecord(response.frame_id, face)));
      }
    }
    return 0;
  } catch (error) {
    const code = Object.keys(grpc.status).find((name) => grpc.status[name] === error.code) || error.code;
    console.error(`client.js: error: the server answered ${code}: ${error.details || error.message}`);
    return 1;
  } finally {
    client.close();
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
