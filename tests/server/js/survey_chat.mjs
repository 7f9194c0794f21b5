// The survey's JavaScript example, word for word, except the host: it points at imgscribe.
import { Ollama } from 'ollama'
const ollama = new Ollama({ host: process.env.OLLAMA_HOST })

const res = await ollama.chat({
    model: 'llava',
    messages: [{
        role: 'user',
        content: 'Describe this image:',
        images: ['./art.jpg']
    }]
})
console.log(res.message.content)
