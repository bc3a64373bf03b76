using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Mitigation.SinkBias;

/// <summary>The input contract of a model with a baked sink prefix, written to its metadata_props so a user (or a runtime
/// integration) can read what changed: <c>onnx_outliers.input_contract</c> (in words), <c>onnx_outliers.sink_prefix_ids</c>
/// (comma-separated ids), <c>onnx_outliers.sink_prefix_length</c> (P) and <c>onnx_outliers.sink_prefix_source</c> (bos,
/// auto or explicit).</summary>
public static class SinkContract
{
    public const string ContractKey = "onnx_outliers.input_contract";
    public const string PrefixKey = "onnx_outliers.sink_prefix_ids";
    public const string LengthKey = Calibration.ModelLimits.BakedPrefixLengthKey;
    public const string SourceKey = "onnx_outliers.sink_prefix_source";

    public static string Describe(CapturedSink sink)
    {
        string ids = string.Join(",", sink.Prefix.TokenIds);
        int p = sink.Length;
        string cache = sink.Plan.Form == SinkForm.Cache
            ? " Past and present caches, attention_mask and position_ids cover the text only, as for any prompt: the graph prepends the prefix to each past, adds its " +
              $"{p} visible mask column(s) and shifts positions by {p}; the present outputs hold the text's keys and values only."
            : $" attention_mask and position_ids cover the text only (positions from 0); the graph shifts positions by {p}.";
        return $"Feed the text WITHOUT the prefix tokens [{ids}] (do not add BOS): they are baked into every attention as constant keys and values at positions 0..{p - 1}, " +
               $"so the text occupies positions {p} onward (at most the context length minus {p} tokens), and the outputs equal the original model's on [{ids}] + text." + cache +
               (sink.Plan.Form == SinkForm.Cache ? " onnxruntime-genai: set search.past_present_share_buffer to false (the past fed to each attention is a new tensor, prefix + cache)." : "");
    }

    public static void Write(Model model, CapturedSink sink)
    {
        model.Metadata.RemoveAll(m => m.Key is ContractKey or PrefixKey or LengthKey or SourceKey);
        model.Metadata.Add(new(ContractKey, Describe(sink)));
        model.Metadata.Add(new(PrefixKey, string.Join(",", sink.Prefix.TokenIds)));
        model.Metadata.Add(new(LengthKey, sink.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        model.Metadata.Add(new(SourceKey, sink.Prefix.Source));
    }

    /// <summary>The baked prefix ids of a model, or null when it has none.</summary>
    public static IReadOnlyList<int>? PrefixOf(Model model)
    {
        var entry = model.Metadata.FirstOrDefault(m => m.Key == PrefixKey);
        return entry.Key is null ? null : entry.Value.Split(',').Select(s => int.Parse(s, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
    }
}
