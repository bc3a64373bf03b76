using System.Buffers.Binary;
using OnnxOutlierTools.Import.Onnx;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Import;

/// <summary>
/// Seeded random decoders. <see cref="Create"/> gives float32 <see cref="DecoderWeights"/> scaled so that
/// activations stay O(1) (weights ~ N(0, 1/in), norm gains ~ 1 + N(0, 0.1^2), embedding ~ N(0, 1)); write them
/// with <see cref="LlamaOnnxBuilder"/> in any flavour, in FLOAT or FLOAT16 (<see cref="LlamaOnnxOptions.WeightType"/>).
/// <see cref="CreateBenchmarkModel"/> gives a large FLOAT16 model whose weights are generated chunk by chunk
/// while the model is saved, never held in memory.
/// </summary>
public static class SyntheticDecoder
{
    /// <summary>A small GQA Llama: dim 64, hidden 176, 2 layers, 4 heads, 2 KV heads, vocab 256, 128 positions.</summary>
    public static DecoderConfig TinyConfig => new(dim: 64, hiddenDim: 176, layers: 2, heads: 4, kvHeads: 2, vocabSize: 256, maxSeqLen: 128);

    /// <summary>The seed of the repository's onnx-models/tiny-llama (tools/ModelGen tiny-llama).</summary>
    public const int TinySeed = 1234;

    public static DecoderWeights Create(DecoderConfig config, int seed)
    {
        ArgumentNullException.ThrowIfNull(config);
        var rng = new Random(seed);
        int d = config.Dim, h = config.HiddenDim, kv = config.KvDim, v = config.VocabSize;
        var embedding = Normal(rng, (long)v * d, 1.0);
        var layers = new LayerWeights[config.Layers];
        for (int l = 0; l < layers.Length; l++)
        {
            layers[l] = new LayerWeights(
                attentionNorm: Gain(rng, d),
                wq: Normal(rng, (long)d * d, 1.0 / Math.Sqrt(d)),
                wk: Normal(rng, (long)kv * d, 1.0 / Math.Sqrt(d)),
                wv: Normal(rng, (long)kv * d, 1.0 / Math.Sqrt(d)),
                wo: Normal(rng, (long)d * d, 1.0 / Math.Sqrt(d)),
                ffnNorm: Gain(rng, d),
                w1: Normal(rng, (long)h * d, 1.0 / Math.Sqrt(d)),
                w2: Normal(rng, (long)d * h, 1.0 / Math.Sqrt(h)),
                w3: Normal(rng, (long)h * d, 1.0 / Math.Sqrt(d)));
        }
        var finalNorm = Gain(rng, d);
        float[]? classifier = config.SharedClassifier ? null : Normal(rng, (long)v * d, 1.0 / Math.Sqrt(d));
        return new DecoderWeights(config, embedding, layers, finalNorm, classifier);
    }

    /// <summary>Convenience: <see cref="Create"/> written by <see cref="LlamaOnnxBuilder"/>.</summary>
    public static Model CreateModel(DecoderConfig config, int seed, LlamaOnnxOptions? options = null) =>
        LlamaOnnxBuilder.Build(Create(config, seed), options);

    /// <summary>
    /// A Llama-shaped config (TinyLlama-like width: dim 2048, hidden 5632, 32 heads, 4 KV heads, vocab 32000,
    /// 2048 positions, separate classifier) with as many layers as bring the FLOAT16 weights closest to
    /// <paramref name="gigabytes"/> GiB (at least one layer).
    /// </summary>
    public static DecoderConfig BenchmarkConfig(double gigabytes = 1.0, int dim = 2048, int hiddenDim = 5632, int heads = 32, int kvHeads = 4,
        int vocabSize = 32000, int maxSeqLen = 2048)
    {
        if (!(gigabytes > 0)) throw new ArgumentException($"gigabytes must be positive, got {gigabytes}", nameof(gigabytes));
        var one = new DecoderConfig(dim, hiddenDim, 1, heads, kvHeads, vocabSize, maxSeqLen, sharedClassifier: false);
        var two = new DecoderConfig(dim, hiddenDim, 2, heads, kvHeads, vocabSize, maxSeqLen, sharedClassifier: false);
        long perLayer = two.ParameterCount - one.ParameterCount;
        long fixedPart = one.ParameterCount - perLayer;
        double target = gigabytes * (1L << 30) / 2;
        int layers = (int)Math.Max(1, Math.Round((target - fixedPart) / perLayer));
        return new DecoderConfig(dim, hiddenDim, layers, heads, kvHeads, vocabSize, maxSeqLen, sharedClassifier: false);
    }

    /// <summary>
    /// A FLOAT16 model of <paramref name="config"/>'s shape in the given flavour (decomposed by default) whose
    /// weight initializers are <see cref="GeneratedTensor"/>s: their bytes come from a counter-based hash of
    /// (seed, tensor, element index), so any chunk can be produced on demand and the same seed always gives
    /// the same bytes. Projection weights are uniform in +-sqrt(3/in), norm gains 1, embeddings uniform in +-1.
    /// The graph is a valid Llama graph; the model computes nothing meaningful. Save it with external data.
    /// </summary>
    public static Model CreateBenchmarkModel(DecoderConfig config, int seed, LlamaOnnxFlavour flavour = LlamaOnnxFlavour.Decomposed)
    {
        ArgumentNullException.ThrowIfNull(config);
        var options = new LlamaOnnxOptions
        {
            Flavour = flavour,
            WeightType = TensorDataType.Float16,
            Description = $"synthetic benchmark decoder (seed {seed}, {config.ParameterCount} parameters, generated FLOAT16 weights)",
        };
        return LlamaOnnxBuilder.Build(config, new GeneratedWeightSource(seed), options);
    }

    private static float[] Normal(Random rng, long count, double std)
    {
        var result = new float[count];
        for (long i = 0; i < count; i++)
        {
            // Box-Muller; 1 - NextDouble() is in (0, 1].
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            result[i] = (float)(std * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return result;
    }

    private static float[] Gain(Random rng, int count)
    {
        var g = Normal(rng, count, 0.1);
        for (int i = 0; i < g.Length; i++) g[i] += 1f;
        return g;
    }

    /// <summary>FLOAT16 weights computed from a hash of (seed, role, layer, element index).</summary>
    private sealed class GeneratedWeightSource(int seed) : WeightSource
    {
        public override TensorDataType DataType => TensorDataType.Float16;

        public override Tensor Get(WeightRole role, int layer, long[] dims, bool rotateHalf)
        {
            ulong stream = Mix((ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ ((ulong)role << 32) ^ (uint)(layer + 1));
            float scale = role switch
            {
                WeightRole.AttentionNorm or WeightRole.FfnNorm or WeightRole.FinalNorm => 0f,
                WeightRole.Embedding => 1f,
                _ => (float)Math.Sqrt(3.0 / dims[0]),
            };
            return new GeneratedTensor(TensorDataType.Float16, dims, (offset, destination) => Fill(stream, scale, offset, destination));
        }

        private static void Fill(ulong stream, float scale, long byteOffset, Span<byte> destination)
        {
            // Element e occupies bytes 2e and 2e+1; a chunk may start or end in the middle of one.
            for (int i = 0; i < destination.Length;)
            {
                long byteIndex = byteOffset + i;
                long element = byteIndex >> 1;
                ushort bits = HalfBits(stream, scale, element);
                if ((byteIndex & 1) == 0 && i + 1 < destination.Length)
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(destination.Slice(i), bits);
                    i += 2;
                }
                else
                {
                    destination[i] = (byte)((byteIndex & 1) == 0 ? bits : bits >> 8);
                    i++;
                }
            }
        }

        private static ushort HalfBits(ulong stream, float scale, long element)
        {
            if (scale == 0f) return BitConverter.HalfToUInt16Bits((Half)1f);
            ulong r = Mix(stream + (ulong)element * 0x9E3779B97F4A7C15UL);
            float u = (float)((r >> 40) * (1.0 / (1UL << 24))) * 2f - 1f; // uniform in [-1, 1)
            return BitConverter.HalfToUInt16Bits((Half)(u * scale));
        }

        // SplitMix64 finalizer.
        private static ulong Mix(ulong z)
        {
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }
}
