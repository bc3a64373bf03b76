using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Calibration;

/// <summary>A limit with where it was read.</summary>
public sealed record ModelLimit(long Value, string Source);

/// <summary>What a calibration run must stay within: the context length (so a window never asks for a position the model
/// has no embedding or rotary entry for) and the token table's rows (so no id indexes past the embedding).</summary>
public static class ModelLimits
{
    /// <summary>The context length: config.json / genai_config.json, else the learned position table's rows, else the rows of
    /// a rotary cos cache initializer (com.microsoft RotaryEmbedding / GroupQueryAttention, ai.onnx RotaryEmbedding); null when
    /// nothing says.</summary>
    public static ModelLimit? Context(Model model, ModelStructure structure)
    {
        // A model with a baked prefix (mitigate --sink-bias) holds P positions before the text: the text gets the rest.
        var limit = FullContext(model, structure);
        int baked = BakedPrefixLength(model);
        return limit is null || baked == 0 ? limit : new(Math.Max(1, limit.Value - baked), $"{limit.Source} less {baked} baked prefix position(s)");
    }

    /// <summary>Metadata key of the baked prefix's length (written by the sink-bias rewrite's contract).</summary>
    public const string BakedPrefixLengthKey = "onnx_outliers.sink_prefix_length";

    /// <summary>Positions a baked sink prefix takes (0 without one).</summary>
    public static int BakedPrefixLength(Model model) =>
        model.Metadata.FirstOrDefault(m => m.Key == BakedPrefixLengthKey) is { Value: { } text }
            && int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int p) ? p : 0;

    private static ModelLimit? FullContext(Model model, ModelStructure structure)
    {
        if (model.FolderFacts?.ContextLength is int configured)
            return new(configured, model.FolderFacts.GenAiConfig?.ContextLength is not null ? "genai_config.json" : "config.json");
        if (structure.Embedding?.PositionTable?.ConstValue is { Dims.Count: 2 } table)
            return new(table.Dims[0], $"position table '{structure.Embedding.PositionTable.Name}'");
        foreach (var node in structure.Graph.Nodes)
        {
            int? cosIndex = (node.OpType, node.Domain) switch
            {
                ("GroupQueryAttention", "com.microsoft") => 7,
                ("RotaryEmbedding", "com.microsoft") => 2,
                ("RotaryEmbedding", "" or "ai.onnx") => 1,
                _ => null,
            };
            if (cosIndex is int i && node.Input(i) is { ConstValue: { Dims.Count: 2 } cos } value)
                return new(cos.Dims[0], $"rotary cache '{value.Name}'");
        }
        return null;
    }

    /// <summary>The number of token ids the embedding accepts (its table's rows); null without a token table initializer.</summary>
    public static ModelLimit? Vocabulary(ModelStructure structure) =>
        structure.Embedding?.TokenTable.ConstValue is { Dims.Count: 2 } table
            ? new(table.Dims[0], $"token table '{structure.Embedding.TokenTable.Name}'")
            : null;
}
