using System.Globalization;
using OnnxOutlierTools.Analysis;

namespace OnnxOutlierTools.Reporting;

/// <summary>One line of the findings table (HTML and console): what, where, on which token and channel, the value, its
/// ratio to the relevant median, and a detail. Text is raw (model strings unescaped): each renderer escapes for its medium.</summary>
public sealed record FindingRow(string Finding, string Where, RowToken? Token, int? Channel, double? Value, double? Ratio, string Detail)
{
    /// <summary>The severity order of the table: what breaks a model first.</summary>
    public int Rank { get; init; }
}

/// <summary>The token a finding was seen on: its position in the window, its id and text (null: no text known).</summary>
public sealed record RowToken(int Position, int TokenId, string? Text)
{
    public static RowToken? Of(TokenInfo? token) => token is null ? null : new(token.Position, token.TokenId, token.Text);
}

/// <summary>Flattens an <see cref="AnalysisResult"/> into table rows, most severe kind first and largest first within a kind.</summary>
public static class FindingRows
{
    public static IReadOnlyList<FindingRow> From(AnalysisResult result)
    {
        var rows = new List<FindingRow>();
        foreach (var ma in result.MassiveActivations)
        {
            string blocks = ma.Blocks.Count == 0 ? "embedding" : ma.Blocks.Count == 1 ? $"block {ma.Blocks[0]}" : $"blocks {ma.Blocks[0]}-{ma.Blocks[^1]}";
            rows.Add(new FindingRow("massive activation", $"{blocks} (peak {ma.Peak.Point.Id})", RowToken.Of(ma.Peak.Token), ma.Channel,
                ma.Peak.Value ?? ma.Peak.Abs, ma.Peak.Ratio, $"{Rule(ma.Rule)}; {Birth(ma.Birth)}; on {ma.Tokens.Count} token(s)") { Rank = 0 });
        }
        foreach (var f in result.Fp16Range)
            rows.Add(new FindingRow(f.Level == Fp16RangeLevel.Overflow ? "fp16 overflow" : "near fp16 max", f.Point.Id, RowToken.Of(f.Token), f.Channel,
                f.MaxAbs, null, $"headroom 65504 / |x| = {N(f.Headroom)}") { Rank = 1 });
        foreach (var s in result.AttentionSinks)
        {
            var token = s.Tokens.FirstOrDefault();
            rows.Add(new FindingRow("attention sink", $"{s.Point.Id} head {s.Head}", token is null ? null : new RowToken(s.Position, token.TokenId, token.Text), null,
                s.Mass, null, $"mean mass {N(s.Mass)} on position {s.Position}{(s.CarriesMassiveActivation ? ", which carries a massive activation" : "")}") { Rank = 2 });
        }
        foreach (var c in result.ChannelOutliers)
            rows.Add(new FindingRow($"channel outlier ({(c.Kind == ChannelOutlierKind.Persistent ? "persistent" : "token-specific")})", c.Point.Id, null, c.Channel,
                c.MaxAbs, c.Ratio, $"median channel max {N(c.MedianChannelMaxAbs)}; above threshold on {c.FractionAbove.ToString("0.#%", CultureInfo.InvariantCulture)} of tokens; kurtosis {N(c.Kurtosis)}") { Rank = 3 });
        foreach (var g in result.NormGainOutliers)
            rows.Add(new FindingRow("norm gain outlier", $"{(g.Block is { } b ? $"block {b} " : "")}{g.Norm} norm", null, g.Channel,
                g.EffectiveGain, g.Ratio, $"{g.GainTensor}; median |gain| {N(g.MedianAbsGain)}" + (g.OutputPoint is null ? "" :
                    $"; at {g.OutputPoint.Id}: {(g.OutputOutlier == true ? "a channel outlier" : "not an outlier")}" + (g.OutputRatio is { } r ? $" ({N(r)}x)" : ""))) { Rank = 4 });
        foreach (var t in result.OutlierTriggeringChannels)
            rows.Add(new FindingRow("W_q trigger channel", $"block {t.Block} query projection", null, t.Channel, t.Score, t.RatioToMedian,
                $"{t.Weight}: max|X_j| {N(t.InputMaxAbs)} x ||W_q[j,:]|| {N(t.RowNorm)}; {t.Share.ToString("0.#%", CultureInfo.InvariantCulture)} of the total{(t.QuerySlice ? "" : " (packed QKV: whole weight)")}") { Rank = 5 });
        return rows;
    }

    public static string Birth(MassiveActivationBirth birth)
    {
        string where = birth.Place switch
        {
            BirthPlace.Embedding => "already in the embedding",
            BirthPlace.Ffn => $"born in block {birth.EmergenceBlock}'s FFN",
            BirthPlace.Attention => $"born in block {birth.EmergenceBlock}'s attention",
            BirthPlace.AttentionOrFfn => $"born in block {birth.EmergenceBlock} (parallel attention + FFN)",
            _ => $"first seen at {birth.FirstPoint.Id}",
        };
        if (birth.DownInputArgMax is { } neuron && birth.DownInputMaxAbs is { } v)
            where += $", down-input neuron {neuron} = {N(v)}";
        if (birth.SuperWeight is { } w)
            where += $", super weight W_down[{w.Row}, {w.Column}] = {N(w.Weight)} ({N(w.Ratio)}x median |w|)";
        return where;
    }

    private static string Rule(MassiveActivationRule rule) => rule == MassiveActivationRule.Absolute ? "Sun et al. rule" : "relative rule";

    public static string N(double v) => Plots.ChannelMaxPlot.Num(v);
}
