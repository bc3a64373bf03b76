namespace OnnxOutlierTools.Analysis;

/// <summary>Probe points whose largest |x| exceeds the fp16 maximum, or comes within the margin of it: the values that
/// turn into infinities (then NaN) when the model runs in fp16 (SCIENCE.md 3). The probes' own reductions run in fp32,
/// so x^2 and x^4 sums of such values are exact here even when the model's dtype is fp16.</summary>
internal static class Fp16RangeCheck
{
    public static IReadOnlyList<Fp16RangeFinding> Find(AnalysisContext context)
    {
        var s = context.Settings;
        var findings = new List<Fp16RangeFinding>();
        foreach (var point in context.Points)
        {
            var stats = context.Stats(point);
            if (stats.AttentionMass is not null || stats.Tokens == 0) continue;
            int channel = 0;
            double max = double.NegativeInfinity;
            for (int c = 0; c < stats.Channels; c++)
            {
                double a = stats.ChannelAbsMax(c);
                if (double.IsNaN(a)) a = double.PositiveInfinity; // a NaN channel is at least as broken as an overflow
                if (a > max) (max, channel) = (a, c);
            }
            if (!(max >= s.Fp16Max / s.Fp16Margin)) continue;
            // The top-k list's first entry is the largest |x| of the point: its token, when it is in this channel.
            var top = stats.Top.Count > 0 && stats.Top[0].Channel == channel ? stats.Top[0] : null;
            findings.Add(new Fp16RangeFinding
            {
                Point = AnalysisContext.Ref(point),
                Level = max > s.Fp16Max ? Fp16RangeLevel.Overflow : Fp16RangeLevel.Near,
                MaxAbs = double.IsFinite(max) ? max : double.MaxValue, // JSON has no infinity
                Channel = channel,
                Token = top is null ? null : context.Token(top.Token),
                Headroom = double.IsFinite(max) ? s.Fp16Max / max : 0,
            });
            if (!double.IsFinite(max))
                context.Note(NoteKind.Info, point.Id, $"channel {channel} is not finite (infinity or NaN): MaxAbs is written as the largest double");
        }
        return findings;
    }
}
