namespace OnnxOutlierTools.Calibration.Text;

/// <summary><c>--bos auto|on|off</c>.</summary>
public enum BosMode
{
    /// <summary>Prepend BOS when the tokenizer itself would (<see cref="TextTokenizer.BosConvention"/>).</summary>
    Auto,
    On,
    Off,
}

/// <summary>The resolved BOS choice: whether each decoder window starts with BOS, its id, and why (for
/// reports, so a run can be reproduced).</summary>
public sealed record BosDecision(bool Prepend, int? BosId, string Reason)
{
    public static BosDecision None(string reason) => new(false, null, reason);
}

/// <summary>
/// Resolves <see cref="BosMode"/>. The auto rule: BOS goes first when the tokenizer defines a BOS token
/// and prepends it itself: tokenizer_config.json's add_bos_token when present, else the tokenizer.json
/// post-processor template, else the format's convention: SentencePiece (tokenizer.model,
/// SentencePiece-style tokenizer.json such as Llama 2's) and llama2.c yes; byte-level BPE such as GPT-2's
/// (whose bos = eos = &lt;|endoftext|&gt; is a document separator), tiktoken and WordPiece no. Without a
/// tokenizer (pre-tokenized ids) auto is off: the ids are taken as given. <c>on</c> needs a BOS id: the
/// tokenizer's, or for ids without a tokenizer the model config's.
/// </summary>
public static class BosPolicy
{
    public static bool TryParse(string? text, out BosMode mode)
    {
        switch (text?.Trim().ToLowerInvariant())
        {
            case "auto": mode = BosMode.Auto; return true;
            case "on": mode = BosMode.On; return true;
            case "off": mode = BosMode.Off; return true;
            default: mode = BosMode.Auto; return false;
        }
    }

    /// <param name="configBosId">The model config's BOS id and its file (ModelFolderFacts.BosTokenId), used by
    /// <c>on</c> when there is no tokenizer.</param>
    public static BosDecision Resolve(BosMode mode, TextTokenizer? tokenizer, (int Id, string File)? configBosId = null)
    {
        int? bos = tokenizer?.Specials.Bos ?? (tokenizer is null ? configBosId?.Id : null);
        string source = tokenizer is not null ? $"the tokenizer's BOS {bos} (\"{(bos is int b ? tokenizer.Decode(b) : "")}\")" : $"BOS {bos} from {configBosId?.File}";
        switch (mode)
        {
            case BosMode.Off:
                return new BosDecision(false, bos, "--bos off");
            case BosMode.On when bos is null:
                throw new CalibrationInputException("--bos on", tokenizer is not null
                    ? $"the tokenizer {tokenizer.Source} defines no BOS token"
                    : "no tokenizer and no bos_token_id in the model's config.json / genai_config.json");
            case BosMode.On:
                return new BosDecision(true, bos, $"--bos on: {source}");
            default:
                if (tokenizer is null) return new BosDecision(false, bos, "--bos auto with pre-tokenized ids: taken as given");
                var convention = tokenizer.BosConvention;
                return new BosDecision(convention.PrependsBos && bos is not null, bos, $"--bos auto: {convention.Reason}");
        }
    }
}
