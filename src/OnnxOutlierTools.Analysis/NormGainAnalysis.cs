using System.Text.Json;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Analysis;

/// <summary>Norm gains far above their median (SCIENCE.md 1: the learned gain, not the normalization, makes channel-wise
/// outliers), with the overlap: whether the same channel is a channel-wise outlier at the norm's output.</summary>
internal static class NormGainAnalysis
{
    public static IReadOnlyList<NormGainOutlier> Find(AnalysisContext context)
    {
        var findings = new List<NormGainOutlier>();
        if (context.Structure is not { } structure) return findings;
        foreach (var block in structure.Blocks)
        {
            var seen = new List<NormRole>();
            foreach (var (slot, norm) in block.Norms)
            {
                if (seen.Any(n => ReferenceEquals(n, norm))) continue; // one norm feeding both sublayers (parallel blocks)
                seen.Add(norm);
                findings.AddRange(Outliers(context, block.Index, JsonNamingPolicy.CamelCase.ConvertName(slot.ToString()), norm));
            }
        }
        if (structure.FinalNorm is { } final) findings.AddRange(Outliers(context, null, "final", final));
        return findings;
    }

    private static IEnumerable<NormGainOutlier> Outliers(AnalysisContext context, int? block, string slot, NormRole norm)
    {
        string subject = block is int b ? $"block {b} {slot} norm" : "final norm";
        var tensor = norm.Gain.ConstValue;
        if (tensor is null || tensor.DataType is not (TensorDataType.Float or TensorDataType.Float16 or TensorDataType.BFloat16 or TensorDataType.Double))
        {
            context.Note(NoteKind.UnreadableWeight, subject, $"gain {norm.Gain.Name} is not a float initializer: gain outliers not checked");
            yield break;
        }
        var gain = tensor.ToSingleArray();
        var effective = gain.Select(g => norm.GainForm == NormGainForm.OnePlusGain ? 1.0 + g : g).ToArray();
        double median = Selection.Median(effective.Select(Math.Abs));
        if (!(median > 0)) { context.Note(NoteKind.Info, subject, $"median |gain| of {norm.Gain.Name} is 0: ratios undefined"); yield break; }

        var output = context.PointForTensor(norm.Output.Name);
        var outStats = output is null ? null : context.Stats(output);
        double outMedian = outStats is null ? 0 : ChannelOutlierFinder.MedianChannelMax(outStats);
        for (int c = 0; c < effective.Length; c++)
        {
            double ratio = Math.Abs(effective[c]) / median;
            if (ratio < context.Settings.NormGainRatio) continue;
            bool measured = outStats is not null && c < outStats.Channels && outStats.Tokens > 0 && outMedian > 0;
            double? outMax = measured ? outStats!.ChannelAbsMax(c) : null;
            double? outRatio = measured ? outMax / outMedian : null;
            yield return new NormGainOutlier
            {
                Block = block, Norm = slot, GainTensor = norm.Gain.Name, GainForm = norm.GainForm, Channel = c,
                Gain = gain[c], EffectiveGain = effective[c], MedianAbsGain = median, Ratio = ratio,
                OutputPoint = output is null ? null : AnalysisContext.Ref(output),
                OutputMaxAbs = outMax, OutputRatio = outRatio,
                OutputOutlier = outRatio is double r ? r >= context.Settings.ChannelRatio : null,
            };
        }
    }
}
