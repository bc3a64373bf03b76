using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Calibration;

/// <summary>What a model input receives during calibration.</summary>
public enum FeedKind
{
    /// <summary>The window's token ids [B, S].</summary>
    TokenIds,
    /// <summary>All ones over past + current positions (no padding is ever fed).</summary>
    AttentionMask,
    /// <summary>past .. past + S - 1 per row.</summary>
    PositionIds,
    /// <summary>Zeros (one segment).</summary>
    TokenTypeIds,
    /// <summary>A KV cache input with a dynamic length axis: empty (length 0) on the first step, the previous step's
    /// present afterwards in step mode.</summary>
    PastCache,
    /// <summary>A fixed-size (static) cache buffer (TensorScatter-style): zeros; the write position comes from
    /// <see cref="WriteIndices"/>.</summary>
    StaticCache,
    /// <summary>GroupQueryAttention's seqlens_k: total length - 1 per row (int32).</summary>
    SeqLensK,
    /// <summary>GroupQueryAttention's total_sequence_length: past + S (int32 scalar).</summary>
    TotalSequenceLength,
    /// <summary>A static cache's write position per row: the past length.</summary>
    WriteIndices,
    /// <summary>The number of valid (non-padded) cache positions per row after this step: past + S.</summary>
    NonPadKvSeqLen,
    /// <summary>An Optimum merged decoder's use_cache_branch: false on the first step (no past).</summary>
    UseCacheBranch,
}

/// <summary>One input's feed: its kind and declared shape.</summary>
public sealed record InputFeed(InputSpec Input, FeedKind Kind);

/// <summary>How to feed a model during calibration, decided once from its inputs (names and shapes as the exporters of
/// <c>../shared/docs/EXPORTS.md</c> write them): token ids, masks, positions, token types, empty or static KV caches,
/// GroupQueryAttention's lengths, static-cache write indices, merged decoders' branch flag. An input of any other kind
/// is refused with its name, rather than fed something made up. Models whose token input has a fixed length of 1 (decoder
/// step models) run in <see cref="StepMode"/>: one token per run, each run's present cache fed back as the next past.</summary>
public sealed class FeedPlan
{
    private FeedPlan(IReadOnlyList<InputFeed> feeds, InputSpec tokens, long? fixedSequence, IReadOnlyDictionary<string, string> presentToPast)
    {
        Feeds = feeds;
        Tokens = tokens;
        FixedSequenceLength = fixedSequence;
        PresentToPast = presentToPast;
    }

    public IReadOnlyList<InputFeed> Feeds { get; }
    public InputSpec Tokens { get; }
    /// <summary>The token input's sequence length when the model fixes it (1 for step models); null when dynamic.</summary>
    public long? FixedSequenceLength { get; }
    public bool StepMode => FixedSequenceLength == 1;
    /// <summary>Step mode: output name of each present cache -> the past input it feeds.</summary>
    public IReadOnlyDictionary<string, string> PresentToPast { get; }

    /// <param name="tokenInput">The token-id input the recognizer found (structure Inputs.InputIds); default "input_ids".</param>
    public static FeedPlan Create(string modelName, IReadOnlyList<InputSpec> inputs, IReadOnlyList<string> outputs, string? tokenInput = null)
    {
        var tokens = inputs.FirstOrDefault(i => i.Name == (tokenInput ?? "input_ids"))
            ?? inputs.FirstOrDefault(i => i.Name == "input_ids");
        if (tokens is null)
        {
            string reason = inputs.Any(i => i.Name.Contains("embeds", StringComparison.OrdinalIgnoreCase))
                ? "it takes inputs_embeds (the embedding is in another model); calibrate a model that takes token ids"
                : "no token-id input (input_ids)";
            throw new CalibrationException($"{modelName}: cannot feed text: {reason}; inputs: {string.Join(", ", inputs.Select(i => i.Name))}");
        }
        if (tokens.Shape.Count != 2 || !tokens.ElementType.IsInteger())
            throw new CalibrationException($"{modelName}: token input '{tokens.Name}' is {tokens}, an integer [batch, sequence] tensor was expected");
        var feeds = new List<InputFeed>();
        foreach (var input in inputs)
        {
            if (input == tokens) { feeds.Add(new(input, FeedKind.TokenIds)); continue; }
            feeds.Add(new(input, Classify(modelName, input, tokens)));
        }
        long? fixedLength = tokens.Shape[1].Value;
        var presentToPast = new Dictionary<string, string>(StringComparer.Ordinal);
        if (fixedLength == 1)
        {
            var pasts = feeds.Where(f => f.Kind == FeedKind.PastCache).Select(f => f.Input.Name).ToHashSet(StringComparer.Ordinal);
            foreach (string output in outputs)
                if (PastNameOf(output) is { } past && pasts.Contains(past)) presentToPast[output] = past;
            var unfed = pasts.Except(presentToPast.Values).ToList();
            if (unfed.Count > 0)
                throw new CalibrationException($"{modelName}: a one-token step model whose cache input(s) {string.Join(", ", unfed)} no present output feeds");
        }
        return new FeedPlan(feeds, tokens, fixedLength, presentToPast);
    }

    /// <summary>The past input a present output feeds by the exporters' naming (present.i.key -> past_key_values.i.key,
    /// present_i -> past_i, present_key_values.i.* -> past_key_values.i.*).</summary>
    public static string? PastNameOf(string output)
    {
        if (output.StartsWith("present.", StringComparison.Ordinal)) return "past_key_values." + output["present.".Length..];
        if (output.StartsWith("present_key_values", StringComparison.Ordinal)) return "past_key_values" + output["present_key_values".Length..];
        if (output.StartsWith("present_", StringComparison.Ordinal)) return "past_" + output["present_".Length..];
        if (output.StartsWith("present", StringComparison.Ordinal)) return "past" + output["present".Length..];
        return null;
    }

    private static FeedKind Classify(string modelName, InputSpec input, InputSpec tokens)
    {
        string name = input.Name.ToLowerInvariant();
        if (name == "use_cache_branch") return FeedKind.UseCacheBranch;
        if (name.Contains("seqlens_k")) return FeedKind.SeqLensK;
        if (name == "total_sequence_length" || name == "total_seq_len") return FeedKind.TotalSequenceLength;
        if (name.Contains("write_indices") || name == "cache_position") return FeedKind.WriteIndices;
        if (name.Contains("nonpad_kv_seqlen")) return FeedKind.NonPadKvSeqLen;
        if (name.Contains("token_type")) return FeedKind.TokenTypeIds;
        if (name.Contains("position")) return FeedKind.PositionIds;
        if (name.Contains("mask")) return FeedKind.AttentionMask;
        if (name.StartsWith("past") || name.Contains("cache"))
        {
            if (!input.ElementType.IsFloatingPoint())
                throw new CalibrationException($"{modelName}: cache input '{input.Name}' is {input.ElementType.OnnxName()}; only float caches are fed");
            string? batch = tokens.Shape[0].Param;
            bool dynamicLength = input.Shape.Any(d => !d.IsKnown && (d.Param is null || d.Param != batch));
            return dynamicLength ? FeedKind.PastCache : FeedKind.StaticCache;
        }
        throw new CalibrationException($"{modelName}: input '{input.Name}' ({input}) is not one calibration knows how to feed " +
            "(token ids, masks, positions, token types, KV caches, GroupQueryAttention lengths, static-cache indices)");
    }

    /// <summary>The inputs for a batch of equal-length rows of <paramref name="ids"/> ([B, S] row-major) after
    /// <paramref name="past"/> cached positions; <paramref name="cache"/> supplies the past tensors in step mode
    /// (null: empty caches).</summary>
    public IReadOnlyList<TensorData> Build(int batch, int sequence, ReadOnlySpan<int> ids, int past, IReadOnlyDictionary<string, TensorData>? cache)
    {
        var list = new List<TensorData>(Feeds.Count);
        int total = past + sequence;
        string? batchSymbol = Tokens.Shape[0].Param;
        foreach (var (input, kind) in Feeds)
        {
            string name = input.Name;
            switch (kind)
            {
                case FeedKind.TokenIds:
                    var tokenValues = new double[batch * sequence];
                    for (int i = 0; i < tokenValues.Length; i++) tokenValues[i] = ids[i];
                    list.Add(InputSynthesizer.Encode(name, input.ElementType, [batch, sequence], tokenValues));
                    break;
                case FeedKind.AttentionMask:
                    long maskLength = input.Shape.Count == 2 && input.Shape[1].Value is long fixedMask ? fixedMask : total;
                    list.Add(Filled(input, input.Shape.Count == 2 ? [batch, maskLength] : Shape(input, batchSymbol, batch, total), 1));
                    break;
                case FeedKind.PositionIds:
                    var positions = new double[batch * sequence];
                    for (int i = 0; i < positions.Length; i++) positions[i] = past + i % sequence;
                    list.Add(InputSynthesizer.Encode(name, input.ElementType, [batch, sequence], positions));
                    break;
                case FeedKind.TokenTypeIds:
                    list.Add(Filled(input, [batch, sequence], 0));
                    break;
                case FeedKind.PastCache when cache is not null && cache.TryGetValue(name, out var previous):
                    list.Add(previous);
                    break;
                case FeedKind.PastCache:
                    list.Add(Filled(input, Shape(input, batchSymbol, batch, 0), 0));
                    break;
                case FeedKind.StaticCache:
                    list.Add(Filled(input, Shape(input, batchSymbol, batch, 0), 0));
                    break;
                case FeedKind.SeqLensK:
                    list.Add(Filled(input, input.Shape.Count == 0 ? [] : [batch], total - 1));
                    break;
                case FeedKind.TotalSequenceLength:
                    list.Add(Filled(input, input.Shape.Select(_ => 1L).ToArray(), total));
                    break;
                case FeedKind.WriteIndices:
                    list.Add(Filled(input, input.Shape.Count == 0 ? [] : [batch], past));
                    break;
                case FeedKind.NonPadKvSeqLen:
                    list.Add(Filled(input, input.Shape.Count == 0 ? [] : [batch], total));
                    break;
                case FeedKind.UseCacheBranch:
                    list.Add(Filled(input, input.Shape.Select(_ => 1L).ToArray(), past > 0 ? 1 : 0));
                    break;
            }
        }
        return list;
    }

    /// <summary>The declared shape with the batch symbol bound to <paramref name="batch"/> and every other unknown axis
    /// bound to <paramref name="other"/> (the past length for caches).</summary>
    private static long[] Shape(InputSpec input, string? batchSymbol, int batch, long other) =>
        input.Shape.Select(d => d.Value ?? (d.Param is not null && d.Param == batchSymbol ? batch : other)).ToArray();

    private static TensorData Filled(InputSpec input, long[] dims, double value) =>
        InputSynthesizer.Fill(value)(input, dims);
}

public sealed class CalibrationException(string message, Exception? inner = null) : Exception(message, inner);
