// Validates one glTF/GLB file with the Khronos glTF Validator (npm gltf-validator) and prints
// its JSON report; installed by `make gltf-validator` into tests/node_modules.
const fs = require("fs");
const path = require("path");
const validator = require("gltf-validator");

const file = process.argv[2];
const data = new Uint8Array(fs.readFileSync(file));
validator
  .validateBytes(data, {
    uri: path.basename(file),
    maxIssues: 100,
    externalResourceFunction: () => Promise.reject(new Error("no external resources")),
  })
  .then((report) => {
    process.stdout.write(JSON.stringify(report, null, 1));
  })
  .catch((error) => {
    process.stderr.write(String(error) + "\n");
    process.exit(1);
  });
