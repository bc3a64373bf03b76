using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace OnnxOutlierTools.Tests.Import;

/// <summary>Per-layer key/value tensors [1, kv_heads, length, head_size] as float32 (converted for FLOAT16 models).</summary>
internal sealed record KvCache(float[][] Keys, float[][] Values, int KvHeads, int Length, int HeadSize)
{
    public static KvCache Empty(int layers, int kvHeads, int headSize) =>
        new(Enumerable.Range(0, layers).Select(_ => Array.Empty<float>()).ToArray(),
            Enumerable.Range(0, layers).Select(_ => Array.Empty<float>()).ToArray(), kvHeads, 0, headSize);
}

internal sealed record DecoderOutput(float[][] Logits, KvCache? Present);

/// <summary>Runs an exported decoder (batch 1) on ONNX Runtime's CPU provider with graph optimizations
/// disabled: input_ids, attention_mask (all ones over past + current), position_ids when the model has
/// them (past .. past + S - 1), past_key_values.{i}.key/value when it has them.</summary>
internal sealed class OrtDecoder : IDisposable
{
    private readonly SessionOptions _options;
    private readonly InferenceSession _session;

    public OrtDecoder(string path)
    {
        _options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL, IntraOpNumThreads = 1 };
        _session = new InferenceSession(path, _options);
        var inputs = _session.InputMetadata;
        HasPositionIds = inputs.ContainsKey("position_ids");
        Layers = inputs.Keys.Count(k => k.StartsWith("past_key_values.", StringComparison.Ordinal) && k.EndsWith(".key", StringComparison.Ordinal));
        if (Layers > 0)
        {
            var meta = inputs["past_key_values.0.key"];
            KvHeads = meta.Dimensions[1];
            HeadSize = meta.Dimensions[3];
            PastIsHalf = meta.ElementDataType == TensorElementType.Float16;
        }
    }

    public bool HasPositionIds { get; }
    public int Layers { get; }
    public int KvHeads { get; }
    public int HeadSize { get; }
    public bool PastIsHalf { get; }

    public KvCache EmptyCache() => KvCache.Empty(Layers, KvHeads, HeadSize);

    public DecoderOutput Run(IReadOnlyList<int> tokens, KvCache? past = null)
    {
        int s = tokens.Count;
        if (Layers > 0) past ??= EmptyCache();
        int p = past?.Length ?? 0;
        var values = new List<OrtValue>();
        var names = new List<string>();
        try
        {
            Add("input_ids", OrtValue.CreateTensorValueFromMemory(tokens.Select(t => (long)t).ToArray(), [1, s]));
            Add("attention_mask", OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, p + s).ToArray(), [1, p + s]));
            if (HasPositionIds) Add("position_ids", OrtValue.CreateTensorValueFromMemory(Enumerable.Range(p, s).Select(i => (long)i).ToArray(), [1, s]));
            for (int i = 0; i < Layers; i++)
            {
                long[] shape = [1, KvHeads, p, HeadSize];
                Add($"past_key_values.{i}.key", FloatValue(past!.Keys[i], shape));
                Add($"past_key_values.{i}.value", FloatValue(past.Values[i], shape));
            }
            var outputNames = new List<string> { "logits" };
            for (int i = 0; i < Layers; i++) { outputNames.Add($"present.{i}.key"); outputNames.Add($"present.{i}.value"); }
            using var runOptions = new RunOptions();
            using var results = _session.Run(runOptions, names, values, outputNames);
            var logits = ReadFloats(results[0]);
            int vocab = logits.Length / s;
            var perPosition = Enumerable.Range(0, s).Select(t => logits.AsSpan(t * vocab, vocab).ToArray()).ToArray();
            KvCache? present = null;
            if (Layers > 0)
            {
                var keys = new float[Layers][];
                var vals = new float[Layers][];
                int length = 0;
                for (int i = 0; i < Layers; i++)
                {
                    keys[i] = ReadFloats(results[1 + 2 * i]);
                    vals[i] = ReadFloats(results[2 + 2 * i]);
                    var shape = results[1 + 2 * i].GetTensorTypeAndShape().Shape;
                    Assert.Equal([1, KvHeads, shape[2], HeadSize], shape);
                    length = (int)shape[2];
                }
                present = new KvCache(keys, vals, KvHeads, length, HeadSize);
            }
            return new DecoderOutput(perPosition, present);
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }

        void Add(string name, OrtValue value)
        {
            names.Add(name);
            values.Add(value);
        }
    }

    private OrtValue FloatValue(float[] data, long[] shape)
    {
        if (!PastIsHalf) return OrtValue.CreateTensorValueFromMemory(data, shape);
        var half = data.Select(f => new Float16(BitConverter.HalfToUInt16Bits((Half)f))).ToArray();
        return OrtValue.CreateTensorValueFromMemory(half, shape);
    }

    private static float[] ReadFloats(OrtValue value)
    {
        var type = value.GetTensorTypeAndShape().ElementDataType;
        if (type == TensorElementType.Float) return value.GetTensorDataAsSpan<float>().ToArray();
        if (type == TensorElementType.Float16)
            return value.GetTensorDataAsSpan<Float16>().ToArray().Select(h => (float)BitConverter.UInt16BitsToHalf(h.value)).ToArray();
        throw new InvalidOperationException($"unexpected output type {type}");
    }

    public void Dispose()
    {
        _session.Dispose();
        _options.Dispose();
    }
}

internal static class Diff
{
    public static double MaxAbs(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        double max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs((double)a[i] - b[i]));
        return max;
    }

    public static double MaxAbs(float[][] a, float[][] b)
    {
        Assert.Equal(a.Length, b.Length);
        double max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, MaxAbs(a[i], b[i]));
        return max;
    }

    public static double MaxAbs(double[][] reference, float[][] b)
    {
        Assert.Equal(reference.Length, b.Length);
        double max = 0;
        for (int i = 0; i < b.Length; i++)
        {
            Assert.Equal(reference[i].Length, b[i].Length);
            for (int j = 0; j < b[i].Length; j++) max = Math.Max(max, Math.Abs(reference[i][j] - b[i][j]));
        }
        return max;
    }

    public static int ArgMax(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }
}
