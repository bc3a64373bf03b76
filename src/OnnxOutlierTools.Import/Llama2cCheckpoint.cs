using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace OnnxOutlierTools.Import;

/// <summary>A llama2.c checkpoint or tokenizer file that does not have the expected layout. The message
/// is one line and starts with the file name.</summary>
public sealed class Llama2cFormatException(string path, string problem)
    : Exception($"{path}: {problem}")
{
    public string FilePath { get; } = path;
}

/// <summary>
/// Reads and writes llama2.c's legacy ("version 0") checkpoint format, the one run.c reads:
/// a 7-int32 little-endian header (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
/// a negative vocab_size means the classifier is stored separately) followed by float32 weights in this
/// order, each tensor stacked over layers: token_embedding [vocab, dim], rms_att [L, dim],
/// wq [L, dim, dim], wk [L, kv_dim, dim], wv [L, kv_dim, dim], wo [L, dim, dim], rms_ffn [L, dim],
/// w1 [L, hidden, dim], w2 [L, dim, hidden], w3 [L, hidden, dim], rms_final [dim],
/// freq_cis_real [seq_len, head_size/2], freq_cis_imag [seq_len, head_size/2] (unused: RoPE is
/// recomputed), then wcls [vocab, dim] only when not shared. Matrices are [out, in] row-major.
/// The file length must match the header exactly.
/// </summary>
public static class Llama2cCheckpoint
{
    private const int HeaderInts = 7;
    private const int HeaderBytes = HeaderInts * sizeof(int);
    private const int VersionedMagic = 0x616b3432; // "ak42": llama2.c export versions 1 and 2

    public static DecoderWeights Load(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new Llama2cFormatException(path, $"cannot read: {ex.Message}");
        }
        return Read(bytes, path);
    }

    /// <summary>Parses a checkpoint held in memory; <paramref name="name"/> names it in errors.</summary>
    public static DecoderWeights Read(ReadOnlySpan<byte> data, string name)
    {
        if (data.Length < HeaderBytes)
            throw new Llama2cFormatException(name, $"file is {data.Length} bytes, shorter than the {HeaderBytes}-byte llama2.c header");
        Span<int> h = stackalloc int[HeaderInts];
        for (int i = 0; i < HeaderInts; i++) h[i] = BinaryPrimitives.ReadInt32LittleEndian(data.Slice(4 * i));
        if (h[0] == VersionedMagic)
            throw new Llama2cFormatException(name, "is a versioned llama2.c export (magic 'ak42'); only the legacy version-0 format that run.c reads is supported");

        int vocab = h[5];
        bool shared = vocab > 0;
        DecoderConfig config;
        try
        {
            config = new DecoderConfig(h[0], h[1], h[2], h[3], h[4], vocab == int.MinValue ? 0 : Math.Abs(vocab), h[6],
                sharedClassifier: shared);
        }
        catch (ArgumentException ex)
        {
            throw new Llama2cFormatException(name, $"header [{string.Join(", ", h.ToArray())}] is not a valid llama2.c config ({Text.Printable.FirstLine(ex.Message)})");
        }

        long floats = FloatCount(config);
        long expected = HeaderBytes + 4 * floats;
        if (data.Length != expected)
            throw new Llama2cFormatException(name,
                $"expected {expected} bytes for a llama2.c checkpoint with {Describe(config)}, but the file has {data.Length} bytes" +
                (data.Length < expected ? " (truncated?)" : " (trailing data, or not a legacy llama2.c checkpoint)"));

        var reader = new FloatReader(data.Slice(HeaderBytes));
        int d = config.Dim, hd = config.HiddenDim, kv = config.KvDim, L = config.Layers, v = config.VocabSize;
        float[] embedding = reader.Take((long)v * d);
        float[][] rmsAtt = reader.TakeLayers(L, d);
        float[][] wq = reader.TakeLayers(L, (long)d * d);
        float[][] wk = reader.TakeLayers(L, (long)kv * d);
        float[][] wv = reader.TakeLayers(L, (long)kv * d);
        float[][] wo = reader.TakeLayers(L, (long)d * d);
        float[][] rmsFfn = reader.TakeLayers(L, d);
        float[][] w1 = reader.TakeLayers(L, (long)hd * d);
        float[][] w2 = reader.TakeLayers(L, (long)d * hd);
        float[][] w3 = reader.TakeLayers(L, (long)hd * d);
        float[] rmsFinal = reader.Take(d);
        reader.Skip(2L * config.MaxSeqLen * config.HeadSize / 2);
        float[]? wcls = shared ? null : reader.Take((long)v * d);

        var layers = new LayerWeights[L];
        for (int l = 0; l < L; l++)
            layers[l] = new LayerWeights(rmsAtt[l], wq[l], wk[l], wv[l], wo[l], rmsFfn[l], w1[l], w2[l], w3[l]);
        return new DecoderWeights(config, embedding, layers, rmsFinal, wcls);
    }

    /// <summary>Writes the legacy format (RoPE tables included, as llama2.c's legacy export does).
    /// The weights must use <see cref="RopeLayout.InterleavedPairs"/>, the layout run.c assumes.</summary>
    public static void Save(DecoderWeights weights, string path)
    {
        var c = weights.Config;
        if (c.RopeLayout != RopeLayout.InterleavedPairs)
            throw new ArgumentException("llama2.c checkpoints store wq/wk in interleaved-pair RoPE order; these weights use rotate-half order", nameof(weights));
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
        using var w = new BinaryWriter(stream);
        foreach (int value in new[] { c.Dim, c.HiddenDim, c.Layers, c.Heads, c.KvHeads, c.SharedClassifier ? c.VocabSize : -c.VocabSize, c.MaxSeqLen })
            w.Write(value);
        Write(w, weights.TokenEmbedding);
        foreach (var l in weights.Layers) Write(w, l.AttentionNorm);
        foreach (var l in weights.Layers) Write(w, l.Wq);
        foreach (var l in weights.Layers) Write(w, l.Wk);
        foreach (var l in weights.Layers) Write(w, l.Wv);
        foreach (var l in weights.Layers) Write(w, l.Wo);
        foreach (var l in weights.Layers) Write(w, l.FfnNorm);
        foreach (var l in weights.Layers) Write(w, l.W1);
        foreach (var l in weights.Layers) Write(w, l.W2);
        foreach (var l in weights.Layers) Write(w, l.W3);
        Write(w, weights.FinalNorm);
        var (cos, sin) = Rope.Tables(c, c.MaxSeqLen);
        Write(w, cos);
        Write(w, sin);
        if (!c.SharedClassifier) Write(w, weights.Classifier);
    }

    /// <summary>Number of float32 values after the header for <paramref name="c"/>.</summary>
    public static long FloatCount(DecoderConfig c)
    {
        long d = c.Dim, hd = c.HiddenDim, kv = c.KvDim, L = c.Layers, v = c.VocabSize;
        long perLayer = d + d * d + 2 * kv * d + d * d + d + 3 * hd * d;
        return v * d + L * perLayer + d + 2L * c.MaxSeqLen * (c.HeadSize / 2) + (c.SharedClassifier ? 0 : v * d);
    }

    internal static string Describe(DecoderConfig c) =>
        $"dim {c.Dim}, hidden_dim {c.HiddenDim}, {c.Layers} layers, {c.Heads} heads, {c.KvHeads} kv heads, " +
        $"vocab {c.VocabSize} ({(c.SharedClassifier ? "shared" : "separate")} classifier), seq_len {c.MaxSeqLen}";

    private static void Write(BinaryWriter w, float[] values)
    {
        if (BitConverter.IsLittleEndian) w.Write(MemoryMarshal.AsBytes(values.AsSpan()));
        else foreach (float f in values) w.Write(f);
    }

    private ref struct FloatReader(ReadOnlySpan<byte> data)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        private long _offset;

        public float[] Take(long count)
        {
            var result = new float[count];
            var bytes = _data.Slice(checked((int)_offset), checked((int)(count * 4)));
            if (BitConverter.IsLittleEndian) bytes.CopyTo(MemoryMarshal.AsBytes(result.AsSpan()));
            else for (int i = 0; i < result.Length; i++) result[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.Slice(4 * i));
            _offset += count * 4;
            return result;
        }

        public float[][] TakeLayers(int layers, long perLayer)
        {
            var result = new float[layers][];
            for (int l = 0; l < layers; l++) result[l] = Take(perLayer);
            return result;
        }

        public void Skip(long count) => _offset += count * 4;
    }
}
