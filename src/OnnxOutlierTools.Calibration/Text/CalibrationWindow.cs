namespace OnnxOutlierTools.Calibration.Text;

/// <summary>What a window is fed to: a decoder (plain token run, BOS first when on) or an encoder
/// ([CLS] tokens [SEP], token_type_ids all 0).</summary>
public enum WindowKind
{
    Decoder,
    EncoderSegment,
}

/// <summary>
/// One calibration input row. The runner feeds <see cref="Ids"/> as is, unpadded (a short last window
/// keeps its own length), so padded positions never enter the statistics.
/// </summary>
/// <param name="Index">Position in the corpus, from 0.</param>
/// <param name="Ids">The token ids, specials included.</param>
/// <param name="HasBos">The first id is the BOS token.</param>
/// <param name="Sequence">The source sequence: 0 for a text, the array index for an ids file, the paragraph
/// index for encoder segments.</param>
/// <param name="SourceStart">Index, in that sequence's token stream, of the first id that is not a
/// special added here (so a report can point back at the text).</param>
public sealed record CalibrationWindow(int Index, int[] Ids, bool HasBos, WindowKind Kind, int Sequence, int SourceStart)
{
    public int Length => Ids.Length;

    /// <summary>Zeros, one per id: the token_type_ids an encoder is fed.</summary>
    public long[] TokenTypeIds() => new long[Ids.Length];
}
