// More of the ollama npm client: streaming, generate, list, show, ps and errors. Prints one JSON line.
import { Ollama } from 'ollama'
const ollama = new Ollama({ host: process.env.OLLAMA_HOST })

const parts = []
for await (const part of await ollama.chat({
  model: 'llava',
  messages: [{ role: 'user', content: 'stream this', images: ['./art.jpg'] }],
  stream: true,
})) {
  parts.push(part)
}
const generated = await ollama.generate({ model: 'llava', prompt: 'hello', options: { num_predict: 2 } })
const models = (await ollama.list()).models.map((m) => m.name)
const shown = await ollama.show({ model: 'llava' })
const running = (await ollama.ps()).models.map((m) => m.name)
let error = null
try {
  await ollama.chat({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] })
} catch (e) {
  error = { name: e.name, status: e.status_code, message: e.error }
}
console.log(JSON.stringify({
  streamed: parts.map((p) => p.message.content).join(''),
  lastDone: parts[parts.length - 1].done,
  roles: [...new Set(parts.map((p) => p.message.role))],
  generated: { text: generated.response, reason: generated.done_reason, evalCount: generated.eval_count },
  models,
  capabilities: shown.capabilities,
  running,
  error,
}))
