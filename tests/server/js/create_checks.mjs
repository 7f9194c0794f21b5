// The ollama npm client's create, as a user derives a model: from an existing one with its own system
// prompt, template, parameters and license. Prints one JSON line.
import { Ollama } from 'ollama'
const ollama = new Ollama({ host: process.env.OLLAMA_HOST })

const statuses = []
for await (const part of await ollama.create({
  model: 'alt-text',
  from: 'llava',
  system: 'Write alt text for the image.',
  template: '{{ .System }} USER: {{ .Prompt }} ASSISTANT:',
  parameters: { temperature: 0, stop: ['USER:'] },
  license: 'MIT',
  stream: true,
})) {
  statuses.push(part.status)
}
const done = await ollama.create({ model: 'alt-text-2', from: 'alt-text', system: 'Shorter.' })
const shown = await ollama.show({ model: 'alt-text' })
let error = null
try {
  await ollama.create({ model: 'bad', from: 'llava', template: '{{ .Prompt' })
} catch (e) {
  error = { name: e.name, status: e.status_code, message: e.error }
}
console.log(JSON.stringify({ statuses, done: done.status, system: shown.system, template: shown.template,
  parameters: shown.parameters, license: shown.license, error }))
