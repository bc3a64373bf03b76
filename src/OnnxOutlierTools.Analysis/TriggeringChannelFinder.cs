using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Analysis;

/// <summary>Candidate outlier-triggering channels of W_q (SCIENCE.md 1, seed paper): input channels j whose
/// max|X_j| * ||W_q[j, :]|| (an upper bound of what channel j adds to any query) dominates the other channels'.</summary>
internal static class TriggeringChannelFinder
{
    public static IReadOnlyList<OutlierTriggeringChannel> Find(AnalysisContext context)
    {
        var findings = new List<OutlierTriggeringChannel>();
        if (context.Structure is not { } structure) return findings;
        foreach (var block in structure.Blocks)
        {
            if (block.Attention is not { } attention) continue;
            var linear = attention.Query ?? attention.PackedQkv;
            if (linear is null) continue;
            string subject = $"block {block.Index} attention.{(attention.Query is null ? "packedQkv" : "query")}";
            var input = context.PointFor(linear.Input.Name, ProbeKind.AttentionInput, block.Index);
            if (input is null) { context.Note(NoteKind.MissingPoint, subject, "its input was not probed: outlier-triggering channels not checked"); continue; }
            var weight = WeightMatrix.TryRead(linear, out var problem);
            if (weight is null) { context.Note(linear.Quantized ? NoteKind.QuantizedWeight : NoteKind.UnreadableWeight, subject, problem!); continue; }
            var stats = context.Stats(input);
            if (stats.Channels != weight.Rows || stats.Tokens == 0)
            {
                context.Note(NoteKind.UnreadableWeight, subject, $"{weight.Name} has {weight.Rows} input rows, its input point {input.Id} {stats.Channels} channels");
                continue;
            }
            var (first, count, querySlice) = QueryColumns(attention, linear, weight);
            if (attention.Query is null && !querySlice)
                context.Note(NoteKind.Approximation, subject, $"{weight.Name}: the query columns could not be told apart ({weight.Columns} outputs, heads {attention.NumHeads}/{attention.KvHeads}, head size {attention.HeadSize}): the whole packed weight was used");
            findings.AddRange(Candidates(context, block.Index, input, stats, weight, first, count, querySlice));
        }
        return findings;
    }

    /// <summary>The query columns of the weight: all of a separate q projection; the first H*D of a packed [q | k | v]
    /// weight whose width is (H + 2 KV) * D.</summary>
    private static (int First, int Count, bool QuerySlice) QueryColumns(AttentionRole attention, LinearRole linear, WeightMatrix weight)
    {
        if (attention.Query is not null) return (0, weight.Columns, true);
        if (attention.NumHeads is int h && attention.HeadSize is int d)
        {
            int kv = attention.KvHeads ?? h;
            if ((long)(h + 2 * kv) * d == weight.Columns) return (0, h * d, true);
        }
        return (0, weight.Columns, false);
    }

    private static IEnumerable<OutlierTriggeringChannel> Candidates(AnalysisContext context, int block, ProbePoint input, PointStatistics stats,
        WeightMatrix weight, int first, int count, bool querySlice)
    {
        var scores = new (double Max, double Norm, double Score)[weight.Rows];
        for (int j = 0; j < weight.Rows; j++)
        {
            double max = stats.ChannelAbsMax(j);
            if (!double.IsFinite(max)) max = 0;
            double norm = weight.RowNorm(j, first, count);
            scores[j] = (max, norm, max * norm);
        }
        double total = scores.Sum(s => s.Score);
        double median = Selection.Median(scores.Select(s => s.Score));
        if (!(median > 0)) yield break;
        foreach (int j in Enumerable.Range(0, weight.Rows).Where(j => scores[j].Score / median >= context.Settings.TriggeringRatio)
            .OrderByDescending(j => scores[j].Score).Take(context.Settings.MaxTriggeringPerLayer))
            yield return new OutlierTriggeringChannel
            {
                Block = block, Weight = weight.Name, QuerySlice = querySlice, InputPoint = AnalysisContext.Ref(input), Channel = j,
                InputMaxAbs = scores[j].Max, RowNorm = scores[j].Norm, Score = scores[j].Score,
                Share = scores[j].Score / total, RatioToMedian = scores[j].Score / median,
            };
    }
}
