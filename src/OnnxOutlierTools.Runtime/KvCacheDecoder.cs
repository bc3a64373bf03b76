using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace OnnxOutlierTools.Runtime;

/// <summary>Per-layer key/value tensors [1, kv_heads, length, head_size] as float32 (converted for FLOAT16 models).</summary>
public sealed record KvCache(float[][] Keys, float[][] Values, int KvHeads, int Length, int HeadSize)
{
    public static KvCache Empty(int layers, int kvHeads, int headSize) =>
        new(Enumerable.Range(0, layers).Select(_ => Array.Empty<float>()).ToArray(),
            Enumerable.Range(0, layers).Select(_ => Array.Empty<float>()).ToArray(), kvHeads, 0, headSize);
}

/// <summary>One decoder step: logits per new position [S][vocab] and the present cache (null without one).</summary>
public sealed record DecoderOutput(float[][] Logits, KvCache? Present);

/// <summary>Runs an exported decoder (batch 1) step by step with its KV cache, in the input and output
/// names of torch/Optimum and onnxruntime-genai exports: input_ids, attention_mask (all ones over past +
/// current), position_ids when the model has them (past .. past + S - 1), past_key_values.{i}.key/value
/// when it has them; logits and present.{i}.key/value out. By default on the CPU with graph optimizations
/// off and one thread (<see cref="SessionSettings.CpuUnoptimized"/>), the settings comparisons use;
/// evaluation (perplexity, KL, flip rates) and the import tests drive decoders through it.</summary>
public sealed class KvCacheDecoder : IDisposable
{
    private readonly ModelSession _model;
    private readonly InferenceSession _session;

    public KvCacheDecoder(string path, SessionSettings? settings = null)
    {
        _model = SessionFactory.Open(path, settings ?? SessionSettings.CpuUnoptimized);
        _session = _model.Session;
        var inputs = _session.InputMetadata;
        if (!inputs.ContainsKey("input_ids") || !_session.OutputMetadata.ContainsKey("logits"))
        {
            _model.Dispose();
            throw new RuntimeSetupException($"{path}: not a decoder with input_ids and logits (inputs: {string.Join(", ", inputs.Keys)})");
        }
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

    public string ModelPath => _model.ModelPath;
    public ExecutionDevice Device => _model.Device;
    public bool HasPositionIds { get; }
    public int Layers { get; }
    public int KvHeads { get; }
    public int HeadSize { get; }
    public bool PastIsHalf { get; }

    public KvCache EmptyCache() => KvCache.Empty(Layers, KvHeads, HeadSize);

    /// <summary>Runs <paramref name="tokens"/> after <paramref name="past"/> (none: an empty cache).</summary>
    public DecoderOutput Run(IReadOnlyList<int> tokens, KvCache? past = null)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (tokens.Count == 0) throw new ArgumentException("at least one token", nameof(tokens));
        if (past is not null && past.Keys.Length != Layers)
            throw new ArgumentException($"the cache holds {past.Keys.Length} layers, the model {Layers}", nameof(past));
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
                    if (shape.Length != 4 || shape[0] != 1 || shape[1] != KvHeads || shape[3] != HeadSize)
                        throw new ModelRunException($"{ModelPath}: present.{i}.key has shape [{string.Join(",", shape)}], expected [1,{KvHeads},length,{HeadSize}]");
                    length = (int)shape[2];
                }
                present = new KvCache(keys, vals, KvHeads, length, HeadSize);
            }
            return new DecoderOutput(perPosition, present);
        }
        catch (OnnxRuntimeException ex)
        {
            throw new ModelRunException($"{ModelPath}: ONNX Runtime run failed: {Text.Printable.FirstLine(ex.Message)}", ex);
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

    public void Dispose() => _model.Dispose();
}
