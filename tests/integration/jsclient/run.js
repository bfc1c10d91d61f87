// Runs one test script with the official OpenWhisk client: reads {script, apihost,
// api_key, args} as JSON on stdin and prints {value} or {error: {statusCode, body, message}}.
'use strict'

const fs = require('fs')
const openwhisk = require('openwhisk')

// What scripts may use beside the client, as their third argument.
const helpers = {
  // The activation's record once it is stored (a blocking invoke that outlasted its wait
  // answered 202 with the id only): polled, for at most 10 minutes.
  async record (ow, activationId) {
    for (let tries = 0; tries < 1200; tries++) {
      try {
        return await ow.activations.get({ name: activationId })
      } catch (error) {
        if (error.statusCode !== 404) throw error
      }
      await new Promise(resolve => setTimeout(resolve, 500))
    }
    throw new Error(`no record of activation ${activationId}`)
  }
}

async function main () {
  const request = JSON.parse(fs.readFileSync(0, 'utf8'))
  const ow = openwhisk({ apihost: request.apihost, api_key: request.api_key, ignore_certs: true })
  const script = require(request.script)
  try {
    const value = await script(ow, request.args, helpers)
    process.stdout.write(JSON.stringify({ value: value === undefined ? null : value }))
  } catch (error) {
    process.stdout.write(JSON.stringify({
      error: { statusCode: error.statusCode, body: error.error, message: String(error.message) }
    }))
  }
}

main().catch(error => {
  process.stderr.write(String(error && error.stack))
  process.exit(1)
})
