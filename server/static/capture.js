// AudioWorklet of the try-it page's live streams: the microphone as 16 kHz mono float32, posted to the page
// in 100 ms pieces. The context usually runs at 16 kHz already (ui.js asks for it); where the browser keeps
// its own rate, samples are resampled here by linear interpolation after a moving-average low-pass.
"use strict";

const TARGET_RATE = 16000;
const PIECE = 1600; // 100 ms at 16 kHz

class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / TARGET_RATE; // input samples per output sample (the global sampleRate)
    this.width = Math.max(1, Math.round(this.step)); // low-pass: mean of this many input samples
    this.history = new Float32Array(this.width); // the last inputs, for the moving average
    this.filled = 0;
    this.position = 0; // where the next output sample falls, in input samples from this block's start
    this.previous = 0; // the last filtered input sample of the block before
    this.out = new Float32Array(PIECE);
    this.used = 0;
  }

  emit(sample) {
    this.out[this.used++] = sample;
    if (this.used === PIECE) {
      this.port.postMessage(this.out.slice());
      this.used = 0;
    }
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    if (this.step === 1) {
      for (let i = 0; i < channel.length; i++) this.emit(channel[i]);
      return true;
    }
    const filtered = new Float32Array(channel.length);
    for (let i = 0; i < channel.length; i++) {
      this.history[this.filled++ % this.width] = channel[i];
      let sum = 0;
      for (let k = 0; k < this.width; k++) sum += this.history[k];
      filtered[i] = sum / this.width;
    }
    while (this.position < channel.length) {
      const at = Math.floor(this.position);
      const before = at > 0 ? filtered[at - 1] : this.previous;
      const fraction = this.position - at;
      this.emit(before + (filtered[at] - before) * fraction);
      this.position += this.step;
    }
    this.position -= channel.length;
    this.previous = filtered[channel.length - 1];
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
