# bash completion for rotctl(1): subcommands, their options, and the values
# of options that take a fixed set. Installed as
# /usr/share/bash-completion/completions/rotctl; it needs nothing from the
# bash-completion package.

_rotctl() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local prev=${COMP_WORDS[COMP_CWORD - 1]}
    local -a words=("${COMP_WORDS[@]}")
    local cword=$COMP_CWORD

    local commands="status log verify pcrs rtmrs registers boot-aggregate policy"
    local command="" i
    for ((i = 1; i < cword; i++)); do
        if [[ " $commands " == *" ${words[i]} "* ]]; then
            command=${words[i]}
            break
        fi
    done

    case $prev in
        --bus)
            COMPREPLY=($(compgen -W "system session unix:path=" -- "$cur"))
            [[ ${COMPREPLY[0]} == unix:path= ]] && compopt -o nospace
            return
            ;;
        --format | -f)
            COMPREPLY=($(compgen -W "ascii binary json" -- "$cur"))
            return
            ;;
        --bank | --column-bank | --ima-hash)
            COMPREPLY=($(compgen -W "sha1 sha256 sha384 sha512 sm3 all" -- "$cur"))
            return
            ;;
        --input | -i | --pcrs | --config)
            COMPREPLY=($(compgen -f -- "$cur"))
            return
            ;;
        --plugin-dir)
            COMPREPLY=($(compgen -d -- "$cur"))
            return
            ;;
        --from | --pcr | --register | --backend | --tcti)
            return
            ;;
    esac

    local options
    case $command in
        "") options="--help --version $commands" ;;
        status) options="--bus --json --help" ;;
        log) options="--input --format --column-bank --from --follow --bus --help" ;;
        verify) options="--input --pcrs --bank --pcr --column-bank --allow-trailing --json --bus --backend --help" ;;
        pcrs | rtmrs | registers)
            options="--backend --bus --config --tcti --plugin-dir --bank --pcr --json --help" ;;
        boot-aggregate) options="--backend --bus --config --tcti --plugin-dir --ima-hash --json --help" ;;
        policy)
            if [[ " ${words[*]} " == *" check "* ]]; then
                COMPREPLY=($(compgen -f -- "$cur"))
                return
            fi
            options="check --help"
            ;;
    esac
    COMPREPLY=($(compgen -W "$options" -- "$cur"))
}
complete -F _rotctl rotctl
